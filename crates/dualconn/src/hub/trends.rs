//! Health over time (SPEC §9): a sample every minute into a 24-hour ring.

use std::collections::VecDeque;

use parking_lot::Mutex;

/// Samples kept: one a minute for 24 hours.
pub const SAMPLES_PER_DAY: usize = 24 * 60;
const SAMPLES_PER_HOUR: usize = 60;

#[derive(Default)]
pub struct HealthTrends {
    /// Health percentages, oldest first.
    samples: Mutex<VecDeque<f64>>,
}

impl HealthTrends {
    pub fn record(&self, health_percentage: f64) {
        let mut samples = self.samples.lock();
        if samples.len() == SAMPLES_PER_DAY {
            samples.pop_front();
        }
        samples.push_back(health_percentage);
    }

    /// Means over the last hour and the last 24 hours. Before the first sample both are the
    /// current figure, never null (SPEC §12.13).
    pub fn means(&self, current: f64) -> (f64, f64) {
        let samples = self.samples.lock();
        if samples.is_empty() {
            return (current, current);
        }
        let mean = |n: usize| {
            let taken: Vec<f64> = samples.iter().rev().take(n).copied().collect();
            taken.iter().sum::<f64>() / taken.len() as f64
        };
        (mean(SAMPLES_PER_HOUR), mean(SAMPLES_PER_DAY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_cover_the_last_hour_and_day() {
        let t = HealthTrends::default();
        assert_eq!(t.means(42.0), (42.0, 42.0));
        for _ in 0..(SAMPLES_PER_DAY - 60) {
            t.record(100.0);
        }
        for _ in 0..60 {
            t.record(50.0);
        }
        let (hour, day) = t.means(0.0);
        assert_eq!(hour, 50.0);
        assert!((day - (100.0 * 1380.0 + 50.0 * 60.0) / 1440.0).abs() < 1e-9);
        t.record(0.0);
        assert_eq!(
            t.samples.lock().len(),
            SAMPLES_PER_DAY,
            "the ring never grows past a day"
        );
    }
}
