//! The few `google.rpc` messages an OTLP server answers with, decoded with prost: the
//! `Status` of a failed OTLP/HTTP request (its body) or of a gRPC call (the
//! `grpc-status-details-bin` trailer, [`tonic::Status::details`]), and the `RetryInfo` a
//! throttling server puts in its details. Hand-written from `google/rpc/status.proto`,
//! `google/rpc/error_details.proto` and `google/protobuf/{any,duration}.proto`, so that no
//! crate is added for four messages. Public so that test receivers can build answers.

use std::time::Duration;

use prost::Message;

/// `google.rpc.RetryInfo`'s type URL inside a `google.protobuf.Any`.
pub const RETRY_INFO_TYPE_URL: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<Any>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub struct Any {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, Message)]
pub struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl RpcStatus {
    /// A status whose details hold one `RetryInfo` asking to wait `delay`.
    pub fn with_retry_delay(code: i32, message: &str, delay: Duration) -> RpcStatus {
        let info = RetryInfo {
            retry_delay: Some(ProtoDuration {
                seconds: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
                nanos: i32::try_from(delay.subsec_nanos()).unwrap_or(0),
            }),
        };
        RpcStatus {
            code,
            message: message.to_owned(),
            details: vec![Any {
                type_url: RETRY_INFO_TYPE_URL.to_owned(),
                value: info.encode_to_vec(),
            }],
        }
    }

    /// The `RetryInfo` delay among the details, if any (a negative one counts as zero).
    pub fn retry_delay(&self) -> Option<Duration> {
        self.details
            .iter()
            .filter(|any| any.type_url.ends_with("google.rpc.RetryInfo"))
            .find_map(|any| RetryInfo::decode(any.value.as_slice()).ok())
            .map(|info| {
                let d = info.retry_delay.unwrap_or_default();
                Duration::from_secs(u64::try_from(d.seconds).unwrap_or(0))
                    + Duration::from_nanos(u64::try_from(d.nanos).unwrap_or(0))
            })
    }
}

/// The `RetryInfo` delay in encoded `google.rpc.Status` bytes, if any.
pub fn retry_delay(status_bytes: &[u8]) -> Option<Duration> {
    if status_bytes.is_empty() {
        return None;
    }
    RpcStatus::decode(status_bytes).ok()?.retry_delay()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_round_trips() {
        let status = RpcStatus::with_retry_delay(8, "slow down", Duration::from_millis(1500));
        let bytes = status.encode_to_vec();
        assert_eq!(retry_delay(&bytes), Some(Duration::from_millis(1500)));
        let plain = RpcStatus {
            code: 8,
            message: "too big".into(),
            details: vec![],
        };
        assert_eq!(retry_delay(&plain.encode_to_vec()), None);
        assert_eq!(retry_delay(b""), None);
        assert_eq!(retry_delay(b"\xff\xff garbage"), None);
    }
}
