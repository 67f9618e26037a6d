//! The validation rules every backend shares: queue names, payload shape, depth and size,
//! and the excerpts errors quote.

use serde_json::Value;

use crate::TransportError;
use crate::task::Payload;

/// The longest queue name, in characters. Every backend stores it within its own limits
/// (RabbitMQ's 255-byte queue names, with the prefix and a suffix).
pub const MAX_QUEUE_NAME: usize = 128;

/// Queue names: `^[a-z](?:[a-z0-9]|_(?!_))*[a-z0-9]$` — lowercase letters, digits and single
/// underscores, starting with a letter, ending with a letter or digit, 2 to
/// [`MAX_QUEUE_NAME`] characters.
pub fn validate_queue_name(name: &str) -> Result<(), TransportError> {
    let bytes = name.as_bytes();
    let ok = (2..=MAX_QUEUE_NAME).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && matches!(bytes[bytes.len() - 1], b'a'..=b'z' | b'0'..=b'9')
        && bytes
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
        && !name.contains("__");
    if ok {
        Ok(())
    } else {
        Err(TransportError::InvalidQueueName(excerpt(name, 80)))
    }
}

/// How deeply a payload may nest objects and arrays. Below serde_json's own parsing limit
/// (128), so that a payload accepted here is read back by every process and backend.
pub const MAX_PAYLOAD_DEPTH: usize = 64;

/// How much of a rejected input an error quotes.
pub const EXCERPT: usize = 200;

/// A payload must be a JSON object: anything else, `null` included, is `Expected a mapping`
/// (a `null` silently stored as `{}` would not be what was submitted), and it may nest at
/// most [`MAX_PAYLOAD_DEPTH`] levels.
pub fn normalize_payload(value: Value) -> Result<Payload, TransportError> {
    match value {
        Value::Object(map) => {
            check_payload(&map)?;
            Ok(map)
        }
        other => Err(TransportError::InvalidPayload(excerpt(
            &other.to_string(),
            EXCERPT,
        ))),
    }
}

/// The one object key a payload may not use: serde_json keeps numbers exact (any number of
/// digits) by reading `{"$serde_json::private::Number": "1.5"}` as the number 1.5, so an
/// object with this key would not come back as it was submitted.
pub const RESERVED_KEY: &str = "$serde_json::private::Number";

/// Refuse a payload nested deeper than [`MAX_PAYLOAD_DEPTH`] (the object itself is level 1)
/// or using [`RESERVED_KEY`].
pub fn check_payload(payload: &Payload) -> Result<(), TransportError> {
    if payload.contains_key(RESERVED_KEY) {
        return Err(TransportError::ReservedKey);
    }
    // Iterative: a hostile payload must not exhaust the stack here.
    let mut stack: Vec<(&Value, usize)> = payload.values().map(|v| (v, 2)).collect();
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Object(map) if map.contains_key(RESERVED_KEY) => {
                return Err(TransportError::ReservedKey);
            }
            Value::Object(map) => Box::new(map.values()),
            Value::Array(items) => Box::new(items.iter()),
            _ => continue,
        };
        if depth > MAX_PAYLOAD_DEPTH {
            return Err(TransportError::PayloadTooDeep {
                max: MAX_PAYLOAD_DEPTH,
            });
        }
        stack.extend(children.map(|v| (v, depth + 1)));
    }
    Ok(())
}

/// Whether JSON `text` (already known to parse) has an object key that decodes to
/// [`RESERVED_KEY`]. Needed besides [`check_payload`]: as the first key of its object, the
/// key is consumed by the parser itself (the object becomes a number).
pub fn has_reserved_key(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'"' {
            i += 1;
            continue;
        }
        // A string token: find its end, skipping escaped characters.
        let start = i;
        i += 1;
        while i < bytes.len() && bytes[i] != b'"' {
            i += if bytes[i] == b'\\' { 2 } else { 1 };
        }
        let end = (i + 1).min(bytes.len());
        i = end;
        let next = bytes[end..].iter().find(|b| !b.is_ascii_whitespace());
        if next == Some(&b':')
            && serde_json::from_str::<String>(&text[start..end]).is_ok_and(|k| k == RESERVED_KEY)
        {
            return true;
        }
    }
    false
}

/// Refuse a payload of `size` bytes (compact JSON) above `max`.
pub fn check_size(size: usize, max: usize) -> Result<(), TransportError> {
    if size > max {
        return Err(TransportError::PayloadTooLarge { size, max });
    }
    Ok(())
}

/// At most `max` characters of `text`, then how long it was: errors quote hostile input
/// without echoing megabytes of it.
pub fn excerpt(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}... ({} bytes in all)", &text[..cut], text.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_follow_the_original_rule() {
        for ok in [
            "ab",
            "foo",
            "a_b",
            "some_queue",
            "scheduled_0_demo_bar_worker",
            "q1",
        ] {
            assert!(validate_queue_name(ok).is_ok(), "{ok} should be valid");
        }
        for bad in [
            "a", "a__b", "foo_", "1foo", "BADNAME", "", "_ab", "a-b", "é1",
        ] {
            assert!(validate_queue_name(bad).is_err(), "{bad} should be invalid");
        }
    }

    #[test]
    fn queue_names_have_a_length_limit_and_errors_an_excerpt() {
        let longest = "a".repeat(MAX_QUEUE_NAME);
        assert!(validate_queue_name(&longest).is_ok());
        let err = validate_queue_name(&"a".repeat(10_000)).unwrap_err();
        assert!(err.to_string().len() < 400, "{err}");
        assert!(err.to_string().contains("(10000 bytes in all)"), "{err}");
    }

    #[test]
    fn payload_nesting_is_limited_without_recursion() {
        // `depth` objects, one inside the other, around a number.
        let nested = |depth: usize| {
            let mut v = Value::from(1);
            for _ in 0..depth {
                v = serde_json::json!({ "a": v });
            }
            v
        };
        assert!(normalize_payload(nested(MAX_PAYLOAD_DEPTH)).is_ok());
        let err = normalize_payload(nested(MAX_PAYLOAD_DEPTH + 1)).unwrap_err();
        assert!(
            matches!(err, TransportError::PayloadTooDeep { .. }),
            "{err}"
        );
        // One object around MAX_PAYLOAD_DEPTH arrays.
        let mut arrays = Value::from(1);
        for _ in 0..MAX_PAYLOAD_DEPTH {
            arrays = Value::Array(vec![arrays]);
        }
        let err = normalize_payload(serde_json::json!({ "a": arrays })).unwrap_err();
        assert!(
            matches!(err, TransportError::PayloadTooDeep { .. }),
            "{err}"
        );
    }

    #[test]
    fn the_reserved_key_is_refused_wherever_it_is() {
        for text in [
            r#"{"a": 1, "$serde_json::private::Number": "2"}"#,
            r#"{"a": [{"b": {"\u0024serde_json::private::Number": 1}}]}"#,
            r#"{"x": {"$serde_json::private::Number": "12"}}"#,
            r#"{ "$serde_json::private::Number"  : "12" }"#,
        ] {
            assert!(has_reserved_key(text), "{text}");
        }
        for text in [
            r#"{"a": "$serde_json::private::Number"}"#,
            r#"{"a\"": ["$serde_json::private::Number", 1]}"#,
            r#"{"serde_json::private::Number": 1}"#,
        ] {
            assert!(!has_reserved_key(text), "{text}");
        }
        let nested: Value = serde_json::json!({"a": [{"b": 1}]});
        let mut inner = serde_json::Map::new();
        inner.insert(RESERVED_KEY.into(), Value::from(1));
        let mut payload = nested.as_object().cloned().unwrap();
        payload.insert("c".into(), Value::Object(inner));
        assert!(matches!(
            check_payload(&payload),
            Err(TransportError::ReservedKey)
        ));
    }

    #[test]
    fn excerpts_cut_on_characters() {
        assert_eq!(excerpt("short", 10), "short");
        assert_eq!(excerpt("ééééé", 2), "éé... (10 bytes in all)");
    }

    #[test]
    fn payloads_must_be_objects() {
        let err = normalize_payload(Value::Null).unwrap_err();
        assert_eq!(err.to_string(), "Expected a mapping\nGot:\n    null");
        let p = normalize_payload(serde_json::json!({"b": 1, "a": {"d": 1, "c": 2}})).unwrap();
        assert_eq!(Value::Object(p).to_string(), r#"{"a":{"c":2,"d":1},"b":1}"#);
        let err = normalize_payload(serde_json::json!([1])).unwrap_err();
        assert_eq!(err.to_string(), "Expected a mapping\nGot:\n    [1]");
    }
}
