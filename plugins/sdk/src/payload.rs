//! [`Payload`], the JSON object a task carries, and the [`payload!`](crate::payload) macro.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::{Error, Result};

/// A task's payload: always a JSON object.
///
/// `Display` renders compact JSON with keys sorted at every level (`{"a":1,"b":[{"x":2}]}`),
/// whatever the map's iteration order, so printed payloads are stable. Derefs to the underlying
/// [`serde_json::Map`] for everything else (`len`, `iter`, `contains_key`, `insert`, ...).
///
/// ```
/// use rex_plugin::{json, payload, Payload};
/// let p = payload!({"foo": 1, "bar": [true]});
/// assert_eq!(p.to_string(), r#"{"bar":[true],"foo":1}"#);
/// assert_eq!(p.get("foo"), Some(&json!(1)));
/// assert!(Payload::from_json(json!([1])).is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Payload(Map<String, Value>);

impl Payload {
    /// The empty payload `{}`.
    pub fn new() -> Self {
        Payload(Map::new())
    }

    /// A payload from a JSON value; fails unless it is an object.
    pub fn from_json(value: Value) -> Result<Self> {
        match value {
            Value::Object(map) => Ok(Payload(map)),
            other => Err(Error::new(format_args!(
                "a payload must be a JSON object, not {}",
                kind(&other)
            ))),
        }
    }

    /// The value under `key`, if any.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// Whether `key` holds a truthy value, in Python's sense: present and not `null`, `false`,
    /// `0`, `""`, `[]` or `{}`.
    pub fn is_truthy(&self, key: &str) -> bool {
        match self.0.get(key) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(Value::Object(o)) => !o.is_empty(),
        }
    }

    /// The underlying map.
    pub fn into_inner(self) -> Map<String, Value> {
        self.0
    }

    /// A copy as a [`Value::Object`].
    pub fn to_value(&self) -> Value {
        Value::Object(self.0.clone())
    }

    /// The payload as a [`Value::Object`].
    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }

    /// Decode the payload into a typed structure.
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct Job { ms: u64 }
    /// let job: Job = rex_plugin::payload!({"ms": 5}).deserialize().unwrap();
    /// assert_eq!(job.ms, 5);
    /// ```
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(T::deserialize(&self.to_value())?)
    }

    /// Encode a typed structure as a payload; fails unless it serializes to an object.
    pub fn serialize<T: Serialize + ?Sized>(value: &T) -> Result<Self> {
        Payload::from_json(serde_json::to_value(value)?)
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_string(&SortedMap(&self.0)).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

/// Serializes a map with its keys sorted, recursively.
struct SortedMap<'a>(&'a Map<String, Value>);
struct Sorted<'a>(&'a Value);

impl Serialize for SortedMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut entries: Vec<_> = self.0.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        serializer.collect_map(entries.into_iter().map(|(k, v)| (k, Sorted(v))))
    }
}

impl Serialize for Sorted<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => SortedMap(map).serialize(serializer),
            Value::Array(items) => serializer.collect_seq(items.iter().map(Sorted)),
            scalar => scalar.serialize(serializer),
        }
    }
}

impl Deref for Payload {
    type Target = Map<String, Value>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Payload {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl From<Map<String, Value>> for Payload {
    fn from(map: Map<String, Value>) -> Self {
        Payload(map)
    }
}

impl From<Payload> for Map<String, Value> {
    fn from(payload: Payload) -> Self {
        payload.0
    }
}

impl From<Payload> for Value {
    fn from(payload: Payload) -> Self {
        Value::Object(payload.0)
    }
}

/// Fails unless the value is an object.
impl TryFrom<Value> for Payload {
    type Error = Error;
    fn try_from(value: Value) -> Result<Self> {
        Payload::from_json(value)
    }
}

/// Parses JSON text; fails unless it is an object.
impl FromStr for Payload {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        Payload::from_json(serde_json::from_str(text)?)
    }
}

impl FromIterator<(String, Value)> for Payload {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        Payload(Map::from_iter(iter))
    }
}

impl IntoIterator for Payload {
    type Item = (String, Value);
    type IntoIter = serde_json::map::IntoIter;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Payload {
    type Item = (&'a String, &'a Value);
    type IntoIter = serde_json::map::Iter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Build a [`Payload`] with [`json!`](crate::json) object syntax: `payload!({"foo": 1})`;
/// `payload!()` is the empty payload.
#[macro_export]
macro_rules! payload {
    () => {
        $crate::Payload::new()
    };
    ({ $($body:tt)* }) => {
        match $crate::serde_json::json!({ $($body)* }) {
            $crate::serde_json::Value::Object(map) => $crate::Payload::from(map),
            _ => ::core::unreachable!(),
        }
    };
}
