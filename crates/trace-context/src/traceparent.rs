//! The W3C Trace Context `traceparent` header
//! (<https://www.w3.org/TR/trace-context/#traceparent-header>): `version-traceid-parentid-flags`,
//! e.g. `00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01`.

use std::fmt;

/// Why a `traceparent` value was not accepted (the receiver then starts a new trace).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceParentError {
    /// Not 55 characters (version 00), or fewer (a later version).
    #[error("a traceparent of version {version} has {expected} characters, not {found}")]
    Length {
        /// The version read, as written.
        version: String,
        /// What that version needs (`"55"` or `"at least 55"`).
        expected: &'static str,
        /// What was found.
        found: usize,
    },
    /// The version is not two lowercase hex digits, or is the forbidden `ff`.
    #[error("the traceparent version is not a valid one (two lowercase hex digits, not ff)")]
    Version,
    /// A `-` is missing between fields (or after the flags, in a later version).
    #[error("the traceparent's fields are not separated by '-' at character {0}")]
    Separator(usize),
    /// A field is not lowercase hex.
    #[error("the traceparent's {0} is not lowercase hex")]
    NotHex(&'static str),
    /// The trace id or the parent id is all zeros.
    #[error("the traceparent's {0} is all zeros")]
    AllZeros(&'static str),
}

/// 16 random bytes identifying a whole trace; never all zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId([u8; 16]);

/// 8 random bytes identifying one span (one request, as its caller knows it); never all zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId([u8; 8]);

impl TraceId {
    /// The id of these bytes, unless they are all zeros.
    pub fn from_bytes(bytes: [u8; 16]) -> Option<Self> {
        (bytes != [0; 16]).then_some(Self(bytes))
    }

    /// A new id from two draws of `random` (an all-zero draw, invalid, gets its last bit set).
    pub fn random(random: &mut impl FnMut() -> u64) -> Self {
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&random().to_be_bytes());
        bytes[8..].copy_from_slice(&random().to_be_bytes());
        if bytes == [0; 16] {
            bytes[15] = 1;
        }
        Self(bytes)
    }

    /// The bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }
}

impl SpanId {
    /// The id of these bytes, unless they are all zeros.
    pub fn from_bytes(bytes: [u8; 8]) -> Option<Self> {
        (bytes != [0; 8]).then_some(Self(bytes))
    }

    /// A new id from one draw of `random` (an all-zero draw, invalid, gets its last bit set).
    pub fn random(random: &mut impl FnMut() -> u64) -> Self {
        Self(random().max(1).to_be_bytes())
    }

    /// The bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        self.0
    }
}

impl fmt::Display for TraceId {
    /// 32 lowercase hex digits.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0
            .iter()
            .try_for_each(|byte| write!(formatter, "{byte:02x}"))
    }
}

impl fmt::Display for SpanId {
    /// 16 lowercase hex digits.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0
            .iter()
            .try_for_each(|byte| write!(formatter, "{byte:02x}"))
    }
}

/// The trace flags. Version 00 defines one, `sampled` (the caller may have recorded the
/// trace); the others are reserved and are not passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceFlags(u8);

impl TraceFlags {
    /// Sampled.
    pub const SAMPLED: Self = Self(0x01);
    /// Not sampled.
    pub const NOT_SAMPLED: Self = Self(0x00);

    /// The flags of a received flags byte: its reserved bits are dropped.
    pub fn from_byte(byte: u8) -> Self {
        Self(byte & Self::SAMPLED.0)
    }

    /// Whether the sampled flag is set.
    pub fn is_sampled(self) -> bool {
        self.0 & Self::SAMPLED.0 != 0
    }

    /// The flags byte.
    pub fn to_byte(self) -> u8 {
        self.0
    }
}

/// A `traceparent`: the trace, the span the request belongs to as its caller knows it (the
/// `parent-id`), and the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// The trace.
    pub trace_id: TraceId,
    /// The caller's span.
    pub parent_id: SpanId,
    /// The flags.
    pub flags: TraceFlags,
}

/// The length of a version-00 `traceparent`.
const LENGTH: usize = 55;

impl TraceParent {
    /// Parses a `traceparent` value (surrounding spaces and tabs ignored). Version 00 must be
    /// exactly `00-<32 hex>-<16 hex>-<2 hex>`; a later version (not `ff`) is read the same way
    /// from its first 55 characters, which must end there or be followed by `-`. Hex is
    /// lowercase; neither id may be all zeros.
    pub fn parse(value: &str) -> Result<Self, TraceParentError> {
        let value = value.trim_matches([' ', '\t']).as_bytes();
        let version = value.get(..2).ok_or(TraceParentError::Version)?;
        let version = hex::<1>(version).ok_or(TraceParentError::Version)?[0];
        let length_error = |expected| TraceParentError::Length {
            version: format!("{version:02x}"),
            expected,
            found: value.len(),
        };
        match version {
            0xff => return Err(TraceParentError::Version),
            0x00 if value.len() != LENGTH => return Err(length_error("55")),
            _ if value.len() < LENGTH => return Err(length_error("at least 55")),
            _ if value.len() > LENGTH && value[LENGTH] != b'-' => {
                return Err(TraceParentError::Separator(LENGTH));
            }
            _ => {}
        }
        for at in [2, 35, 52] {
            if value[at] != b'-' {
                return Err(TraceParentError::Separator(at));
            }
        }
        let trace_id = hex::<16>(&value[3..35]).ok_or(TraceParentError::NotHex("trace-id"))?;
        let parent_id = hex::<8>(&value[36..52]).ok_or(TraceParentError::NotHex("parent-id"))?;
        let flags = hex::<1>(&value[53..55]).ok_or(TraceParentError::NotHex("trace-flags"))?;
        Ok(Self {
            trace_id: TraceId::from_bytes(trace_id)
                .ok_or(TraceParentError::AllZeros("trace-id"))?,
            parent_id: SpanId::from_bytes(parent_id)
                .ok_or(TraceParentError::AllZeros("parent-id"))?,
            flags: TraceFlags::from_byte(flags[0]),
        })
    }

    /// The start of a new trace: a new trace id and span id, with `flags`.
    pub fn root(random: &mut impl FnMut() -> u64, flags: TraceFlags) -> Self {
        Self {
            trace_id: TraceId::random(random),
            parent_id: SpanId::random(random),
            flags,
        }
    }

    /// A span below this one: the same trace and flags, a new span id.
    pub fn child(&self, random: &mut impl FnMut() -> u64) -> Self {
        Self {
            parent_id: SpanId::random(random),
            ..*self
        }
    }

    /// The caller's `traceparent` header, when it parses; else the root of a new, sampled
    /// trace (Orderly logs every request).
    pub fn from_header(value: Option<&str>, random: &mut impl FnMut() -> u64) -> Self {
        value
            .and_then(|value| Self::parse(value).ok())
            .unwrap_or_else(|| Self::root(random, TraceFlags::SAMPLED))
    }
}

impl fmt::Display for TraceParent {
    /// The header value, version 00.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "00-{}-{}-{:02x}",
            self.trace_id,
            self.parent_id,
            self.flags.to_byte()
        )
    }
}

/// The `N` bytes written as `2N` lowercase hex digits in `text`, if that is what it holds.
fn hex<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut bytes = [0; N];
    for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
        *byte = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The spec's example: `traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01`.
    const EXAMPLE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn parsed(value: &str) -> TraceParent {
        TraceParent::parse(value).unwrap_or_else(|error| panic!("{value}: {error}"))
    }

    #[test]
    fn the_spec_examples_parse_and_format_back() {
        let example = parsed(EXAMPLE);
        assert_eq!(
            example.trace_id.to_bytes(),
            [
                0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80,
                0x31, 0x9c
            ]
        );
        assert_eq!(
            example.parent_id.to_bytes(),
            [0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31]
        );
        assert!(example.flags.is_sampled());
        assert_eq!(example.to_string(), EXAMPLE);
        // The spec's sampled and not-sampled pair.
        for value in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        ] {
            assert_eq!(parsed(value).to_string(), value);
        }
        assert!(
            !parsed("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
                .flags
                .is_sampled()
        );
    }

    #[test]
    fn malformed_values_are_refused_with_the_reason() {
        use TraceParentError::*;
        let refused = |value: &str| TraceParent::parse(value).unwrap_err();
        assert_eq!(
            refused("00-00000000000000000000000000000000-b7ad6b7169203331-01"),
            AllZeros("trace-id")
        );
        assert_eq!(
            refused("00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01"),
            AllZeros("parent-id")
        );
        assert_eq!(
            refused("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            Version
        );
        assert_eq!(refused(""), Version);
        assert_eq!(
            refused("0g-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            Version
        );
        assert_eq!(
            refused("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"),
            NotHex("trace-id")
        );
        assert_eq!(
            refused("00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333z-01"),
            NotHex("parent-id")
        );
        assert_eq!(
            refused("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0x"),
            NotHex("trace-flags")
        );
        assert_eq!(
            refused("00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            Separator(2)
        );
        assert_eq!(
            refused("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-"),
            Length {
                version: "00".into(),
                expected: "55",
                found: 56
            }
        );
        assert_eq!(
            refused("00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01"),
            Length {
                version: "00".into(),
                expected: "55",
                found: 54
            }
        );
        assert_eq!(
            refused("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x"),
            Separator(55)
        );
        assert_eq!(
            refused("00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033\u{e9}-01"),
            NotHex("parent-id"),
            "55 bytes, one character of them two bytes long"
        );
    }

    #[test]
    fn later_versions_are_read_from_their_first_fields() {
        let future = parsed(
            "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-the-future-will-be-like",
        );
        assert_eq!(future.to_string(), EXAMPLE, "passed on as version 00");
        assert_eq!(
            parsed("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").to_string(),
            EXAMPLE
        );
    }

    #[test]
    fn reserved_flags_and_surrounding_spaces_are_dropped() {
        let value = " \t00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-09 ";
        assert_eq!(parsed(value).to_string(), EXAMPLE);
        let unsampled = parsed("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-fe");
        assert_eq!(unsampled.flags, TraceFlags::NOT_SAMPLED);
    }

    #[test]
    fn a_missing_or_malformed_header_starts_a_sampled_trace() {
        let mut draws = 1u64..=6;
        let mut random = || draws.next().expect("enough draws");
        let kept = TraceParent::from_header(Some(EXAMPLE), &mut random);
        assert_eq!(kept.to_string(), EXAMPLE);
        let started = TraceParent::from_header(None, &mut random);
        assert_eq!(
            started.to_string(),
            "00-00000000000000010000000000000002-0000000000000003-01"
        );
        let restarted = TraceParent::from_header(Some("00-garbage"), &mut random);
        assert_eq!(
            restarted.to_string(),
            "00-00000000000000040000000000000005-0000000000000006-01"
        );
        assert_ne!(restarted.trace_id, started.trace_id);
    }

    #[test]
    fn a_child_keeps_the_trace_and_flags() {
        let parent = parsed(EXAMPLE);
        let child = parent.child(&mut || 0xb9c7_c989_f979_18e1);
        assert_eq!(
            child.to_string(),
            "00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-01"
        );
    }

    #[test]
    fn zero_draws_still_make_valid_ids() {
        let root = TraceParent::root(&mut || 0, TraceFlags::NOT_SAMPLED);
        assert_eq!(
            root.to_string(),
            "00-00000000000000000000000000000001-0000000000000001-00"
        );
        assert_eq!(TraceParent::parse(&root.to_string()), Ok(root));
    }

    fn trace_parents() -> impl Strategy<Value = TraceParent> {
        (
            any::<[u8; 16]>().prop_filter_map("all zeros", TraceId::from_bytes),
            any::<[u8; 8]>().prop_filter_map("all zeros", SpanId::from_bytes),
            any::<bool>(),
        )
            .prop_map(|(trace_id, parent_id, sampled)| TraceParent {
                trace_id,
                parent_id,
                flags: if sampled {
                    TraceFlags::SAMPLED
                } else {
                    TraceFlags::NOT_SAMPLED
                },
            })
    }

    proptest! {
        /// parse(format(x)) == x, and the format is always 55 characters of version 00.
        #[test]
        fn formatted_values_parse_back(traceparent in trace_parents()) {
            let text = traceparent.to_string();
            prop_assert_eq!(text.len(), 55);
            prop_assert!(text.starts_with("00-"));
            prop_assert_eq!(TraceParent::parse(&text), Ok(traceparent));
        }

        /// Whatever a caller sends, parsing never panics, and what it accepts formats to a
        /// version-00 value that parses to the same.
        #[test]
        fn any_input_is_refused_or_normalised(value in "\\PC{0,80}|[0-9a-f-]{50,60}") {
            if let Ok(traceparent) = TraceParent::parse(&value) {
                prop_assert_eq!(TraceParent::parse(&traceparent.to_string()), Ok(traceparent));
            }
        }

        /// A child differs from its parent only in its span id.
        #[test]
        fn children_share_the_trace(traceparent in trace_parents(), draw in any::<u64>()) {
            let child = traceparent.child(&mut || draw);
            prop_assert_eq!(child.trace_id, traceparent.trace_id);
            prop_assert_eq!(child.flags, traceparent.flags);
            prop_assert_eq!(child.parent_id.to_bytes(), draw.max(1).to_be_bytes());
        }
    }
}
