//! Property tests of the public codec API: every type round-trips bit-exactly, and random or
//! truncated bytes give errors, never panics.

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

/// Values compared by their bits, so NaN payloads and -0.0 count.
fn bit_exact(values: &Values) -> Vec<u64> {
    match values {
        Values::Boolean(v) => v.iter().map(|&b| u64::from(b)).collect(),
        Values::Int32(v) => v.iter().map(|&x| x as u64).collect(),
        Values::Int64(v) => v.iter().map(|&x| x as u64).collect(),
        Values::Float(v) => v.iter().map(|x| u64::from(x.to_bits())).collect(),
        Values::Double(v) => v.iter().map(|x| x.to_bits()).collect(),
        Values::Text(v) => v
            .iter()
            .flat_map(|s| std::iter::once(s.len() as u64).chain(s.iter().map(|&b| u64::from(b))))
            .collect(),
    }
}

fn any_values() -> impl Strategy<Value = Values> {
    let len = 0usize..600;
    prop_oneof![
        proptest::collection::vec(any::<bool>(), len.clone()).prop_map(Values::Boolean),
        proptest::collection::vec(any::<i32>(), len.clone()).prop_map(Values::Int32),
        proptest::collection::vec(-50i32..50, len.clone()).prop_map(Values::Int32),
        proptest::collection::vec(any::<i64>(), len.clone()).prop_map(Values::Int64),
        (
            any::<i64>(),
            proptest::collection::vec(-3i64..3, len.clone())
        )
            .prop_map(|(start, steps)| {
                let mut v = start;
                Values::Int64(
                    steps
                        .into_iter()
                        .map(|s| {
                            v = v.wrapping_add(s);
                            v
                        })
                        .collect(),
                )
            }),
        proptest::collection::vec(any::<u32>().prop_map(f32::from_bits), len.clone())
            .prop_map(Values::Float),
        proptest::collection::vec(any::<u64>().prop_map(f64::from_bits), len.clone())
            .prop_map(Values::Double),
        (
            0i64..10_000,
            proptest::collection::vec(-100i64..=100, len.clone())
        )
            .prop_map(|(start, steps)| {
                let mut v = start;
                Values::Double(
                    steps
                        .into_iter()
                        .map(|s| {
                            v += s;
                            v as f64 / 100.0
                        })
                        .collect(),
                )
            }),
        proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..12).prop_map(Bytes::from),
            len.clone()
        )
        .prop_map(Values::Text),
        proptest::collection::vec(
            (0u8..4).prop_map(|i| Bytes::from(vec![b'a'; usize::from(i)])),
            len
        )
        .prop_map(Values::Text),
    ]
}

/// What [`encode_values_range`] must write: [`encode_values`] of a copy of the range.
fn encode_copy_of_range(values: &Values, range: std::ops::Range<usize>) -> Vec<u8> {
    let mut copy = Values::with_capacity(values.data_type(), range.len());
    copy.extend_from(values, range);
    let mut out = Vec::new();
    encode_values(&copy, &mut out);
    out
}

proptest! {
    #[test]
    fn a_range_encodes_as_a_copy_of_it(values in any_values(), a in 0usize..600, b in 0usize..600) {
        let (start, end) = (a.min(b).min(values.len()), a.max(b).min(values.len()));
        let mut out = Vec::new();
        encode_values_range(&values, start..end, &mut out);
        prop_assert_eq!(out, encode_copy_of_range(&values, start..end));
    }

    #[test]
    fn every_type_roundtrips_and_truncation_fails(values in any_values()) {
        let mut out = Vec::new();
        encode_values(&values, &mut out);
        let decoded = decode_values(values.data_type(), &out, values.len()).unwrap();
        prop_assert_eq!(bit_exact(&decoded), bit_exact(&values));
        for cut in [0, out.len() / 3, out.len() / 2, out.len() - 1] {
            prop_assert!(decode_values(values.data_type(), &out[..cut], values.len()).is_err());
        }
    }

    #[test]
    fn timestamps_roundtrip(start in any::<i64>(), steps in proptest::collection::vec(1i64..5000, 0..700)) {
        let mut t = start;
        let timestamps: Vec<i64> = steps.iter().map(|s| { t = t.wrapping_add(*s); t }).collect();
        let mut out = Vec::new();
        encode_timestamps(&timestamps, &mut out);
        prop_assert_eq!(decode_timestamps(&out, timestamps.len()).unwrap(), timestamps.clone());
        if !out.is_empty() {
            prop_assert!(decode_timestamps(&out[..out.len() - 1], timestamps.len()).is_err());
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400),
                                count in 0usize..2000,
                                type_code in 0u8..6) {
        let data_type = DataType::from_code(type_code).unwrap();
        let _ = decode_values(data_type, &bytes, count);
        let _ = decode_timestamps(&bytes, count);
    }
}

#[test]
fn regular_timestamps_cost_a_few_bytes() {
    let timestamps: Vec<i64> = (0..1000).map(|r| 1_700_000_000_000 + r * 1000).collect();
    let mut out = Vec::new();
    encode_timestamps(&timestamps, &mut out);
    assert!(out.len() <= 16, "{} bytes", out.len());
}

#[test]
fn huge_counts_are_rejected_before_allocating() {
    let mut out = Vec::new();
    encode_timestamps(&[5, 10, 15], &mut out);
    assert_eq!(
        decode_timestamps(&out, COLUMN_VALUES_MAX + 1),
        Err(CodecError::TooManyValues {
            count: COLUMN_VALUES_MAX + 1
        })
    );
}
