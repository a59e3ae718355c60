//! The claims dualconn reads from a verified token, in one pass over their JSON.
//!
//! The player's claim is named by the operator (SPEC §12.28), so no struct can name it as a
//! field. A struct holding the rest as a `#[serde(flatten)]` map built every claim twice, as
//! serde's buffered content and then as a map of `serde_json::Value`s: the largest part of
//! checking a token that was ours, and a token is checked on every connection's set-up
//! (BENCHMARKS.md, "The token check and `TCP_NODELAY`"). Here the three claims we read are
//! kept, borrowed from the JSON text where it has no escapes, and every other claim is skipped
//! unparsed.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// What `authenticate` needs from a token's claims.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Claims<'a> {
    pub exp: u64,
    /// `role: "admin"`.
    pub admin: bool,
    pub player: Player<'a>,
}

/// The player's claim as the token carries it; the caller decides which forms are an id.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Player<'a> {
    /// Absent, or `null`.
    Missing,
    Text(Cow<'a, str>),
    /// Games often number their players.
    Integer(i128),
    /// A fraction, a boolean, an array or an object.
    Other,
}

/// Reads `json`, the claims of a token whose signature has been checked, keeping `exp`,
/// `role` and the claim named `player_claim`. A claim given twice is an error: RFC 7519 §4
/// lets a parser refuse it, and refusing leaves no doubt about which one counted.
pub(super) fn parse<'a>(
    json: &'a str,
    player_claim: &str,
) -> Result<Claims<'a>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(json);
    let claims = ClaimsSeed { player_claim }.deserialize(&mut de)?;
    de.end()?;
    Ok(claims)
}

struct ClaimsSeed<'c> {
    player_claim: &'c str,
}

impl<'de> DeserializeSeed<'de> for ClaimsSeed<'_> {
    type Value = Claims<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Claims<'de>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ClaimsSeed<'_> {
    type Value = Claims<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object of claims")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Claims<'de>, A::Error> {
        let mut exp = None;
        let mut role: Option<Option<Text<'de>>> = None;
        let mut player = None;
        while let Some(Text(name)) = map.next_key()? {
            // `exp` and `role` first: a player claim configured with either name is never
            // found, as when these were a struct's own fields.
            if name == "exp" {
                once(&mut exp, map.next_value()?, "exp")?;
            } else if name == "role" {
                once(&mut role, map.next_value()?, "role")?;
            } else if name == self.player_claim {
                once(&mut player, map.next_value()?, "the player claim")?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Claims {
            exp: exp.ok_or_else(|| de::Error::missing_field("exp"))?,
            admin: matches!(role, Some(Some(Text(role))) if role == "admin"),
            player: player.unwrap_or(Player::Missing),
        })
    }
}

fn once<T, E: de::Error>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(name));
    }
    *slot = Some(value);
    Ok(())
}

/// A string, borrowed from the JSON when it has no escapes (serde's own `Cow` always copies).
struct Text<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(v.to_owned())))
    }
}

impl<'de> de::Deserialize<'de> for Player<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PlayerVisitor)
    }
}

struct PlayerVisitor;

impl<'de> Visitor<'de> for PlayerVisitor {
    type Value = Player<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Player<'de>, E> {
        Ok(Player::Text(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Player<'de>, E> {
        Ok(Player::Text(Cow::Owned(v.to_owned())))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Player<'de>, E> {
        Ok(Player::Integer(v.into()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Player<'de>, E> {
        Ok(Player::Integer(v.into()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Player<'de>, E> {
        Ok(Player::Missing)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Player<'de>, E> {
        Ok(Player::Other)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Player<'de>, E> {
        Ok(Player::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Player<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Player::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Player<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Player::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn player(json: &str) -> Player<'_> {
        parse(json, "player_id").expect("valid claims").player
    }

    #[test]
    fn the_named_claim_is_the_player_in_every_form_a_token_may_give_it() {
        assert_eq!(
            player(r#"{"exp":1,"player_id":"knight"}"#),
            Player::Text("knight".into())
        );
        assert!(matches!(
            player(r#"{"exp":1,"player_id":"knight"}"#),
            Player::Text(Cow::Borrowed(_))
        ));
        assert_eq!(
            player(r#"{"exp":1,"player_id":"kn\u0069ght"}"#),
            Player::Text("knight".into())
        );
        assert_eq!(player(r#"{"exp":1,"player_id":42}"#), Player::Integer(42));
        assert_eq!(player(r#"{"exp":1,"player_id":-7}"#), Player::Integer(-7));
        assert_eq!(
            player(r#"{"exp":1,"player_id":18446744073709551615}"#),
            Player::Integer(u64::MAX.into())
        );
        for other in ["4.5", "1e3", "true", "[\"a\"]", r#"{"id":"a"}"#] {
            let json = format!(r#"{{"exp":1,"player_id":{other}}}"#);
            assert_eq!(player(&json), Player::Other, "{other}");
        }
        assert_eq!(player(r#"{"exp":1,"player_id":null}"#), Player::Missing);
        assert_eq!(player(r#"{"exp":1,"sub":"knight"}"#), Player::Missing);
    }

    #[test]
    fn exp_and_role_are_read_and_the_rest_skipped() {
        let claims = parse(
            r#"{"iss":"game","sub":"u-1","aud":["a","b"],"exp":1700000000,"role":"admin",
               "extra":{"deep":[1,{"x":null}]},"player_id":"knight"}"#,
            "player_id",
        )
        .expect("valid claims");
        assert_eq!(
            claims,
            Claims {
                exp: 1_700_000_000,
                admin: true,
                player: Player::Text("knight".into()),
            }
        );
        for role in [r#""player""#, "null", r#""Admin""#] {
            let json = format!(r#"{{"exp":1,"role":{role}}}"#);
            assert!(!parse(&json, "sub").expect("valid claims").admin, "{role}");
        }
    }

    #[test]
    fn malformed_claims_are_errors() {
        for json in [
            r#"{"sub":"a"}"#,
            r#"{"exp":"soon","sub":"a"}"#,
            r#"{"exp":-1,"sub":"a"}"#,
            r#"{"exp":1e300,"sub":"a"}"#,
            r#"{"exp":1,"role":7}"#,
            r#"{"exp":1,"exp":2}"#,
            r#"{"exp":1,"sub":"a","sub":"b"}"#,
            r#"{"exp":1,"role":"x","role":"admin"}"#,
            r#"["exp",1]"#,
            r#"{"exp":1} trailing"#,
            r#"{"exp":1"#,
        ] {
            assert!(parse(json, "sub").is_err(), "{json}");
        }
    }

    #[test]
    fn a_player_claim_named_like_exp_or_role_is_never_found() {
        let claims = parse(r#"{"exp":1,"role":"admin"}"#, "role").expect("valid claims");
        assert_eq!(claims.player, Player::Missing);
        assert!(claims.admin);
    }
}
