//! Rebuilds the binary when the embedded pages change: include_dir alone does not tell Cargo.

fn main() {
    println!("cargo:rerun-if-changed=../../web/public");
}
