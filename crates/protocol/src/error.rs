//! Why a payload or topic was refused. Messages name the field and the offending value so an
//! operator reading a log line knows exactly what the device sent.

use crate::Dialect;

/// A message that does not follow the contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The payload is larger than [`crate::MAX_PAYLOAD`]; it was not parsed.
    #[error("payload is {size} bytes, over the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    /// The topic is not one of the OTA topics of any dialect.
    #[error("topic {0:?} is not an OTA topic of any dialect")]
    UnknownTopic(String),
    /// The payload is not JSON at all.
    #[error("payload is not valid JSON: {0}")]
    InvalidJson(String),
    /// A JSON value where an object was required (the payload itself or a nested field).
    #[error("field \"{field}\": expected a JSON object, got {got}")]
    NotAnObject { field: String, got: String },
    /// A required field is absent.
    #[error("missing field \"{0}\"")]
    MissingField(String),
    /// A field has the wrong JSON type.
    #[error("field \"{field}\": expected {expected}, got {got}")]
    WrongType {
        field: String,
        expected: &'static str,
        got: String,
    },
    /// A number outside the range the contract allows.
    #[error("field \"{field}\": {value} is out of range {min}..={max}")]
    OutOfRange {
        field: String,
        value: i64,
        min: i64,
        max: i64,
    },
    /// A Tencent `type` (or progress `state`) that is not part of the contract.
    #[error("field \"{field}\": unknown value {value:?}")]
    UnknownValue { field: String, value: String },
    /// A request whose `method` does not belong on its topic.
    #[error("method {method:?} does not belong on the {topic} topic")]
    UnknownMethod { method: String, topic: &'static str },
    /// A cloud → device answer on a topic that carries both ways (Alibaba's
    /// `/ota/device/request`): it has `data`, `message` or `code` and no `params`. Otter's own
    /// answer heard back through a broker, or a device echoing one; never answered.
    #[error(
        "payload is an answer (\"data\"/\"message\"/\"code\" without \"params\"), not a device request, on the {topic} topic"
    )]
    AnswerNotRequest { topic: &'static str },
    /// The dialect has no way to express this message.
    #[error("the {dialect} dialect has no {what}")]
    Unsupported {
        dialect: Dialect,
        what: &'static str,
    },
}
