//! The fuzzing harness shared by the decoder fuzz tests of `net`, `storage` and `node`
//! (each includes this file with `#[path = "../../testing/fuzz_harness.rs"] mod
//! fuzz_harness;`): the case count knob, the peak-allocation check, and the strategies
//! that spoil valid encodings.
//!
//! `FUZZ_CASES=N` sets the cases per decoder; each test file passes its CI-sized default.
//! The allocation check watches the process's peak virtual size (`VmPeak`): a
//! `Vec::with_capacity` of a declared gigabyte shows there even if its pages are never
//! touched, so decoders run one after another in a single test.

#![allow(dead_code)]

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Peak virtual memory a decoder may add while it runs.
pub const PEAK_GROWTH_BYTES_MAX: u64 = 512 * 1024 * 1024;

/// Cases per decoder: `FUZZ_CASES`, else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// `VmPeak` of this process, in bytes.
fn peak_virtual_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with("VmPeak:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Runs `check` on `cases` inputs drawn from `strategy` and requires the peak virtual
/// size to grow by less than [`PEAK_GROWTH_BYTES_MAX`].
pub fn fuzz<S: Strategy>(name: &str, cases: u32, strategy: S, check: impl Fn(S::Value)) {
    let before = peak_virtual_bytes();
    let started = std::time::Instant::now();
    let mut runner = TestRunner::new(Config {
        cases: cases.max(1),
        failure_persistence: None,
        ..Config::default()
    });
    if let Err(error) = runner.run(&strategy, |input| {
        check(input);
        Ok(())
    }) {
        panic!("{name}: {error}");
    }
    let growth = peak_virtual_bytes().saturating_sub(before);
    eprintln!(
        "{name}: {:?}, peak virtual size +{} KiB",
        started.elapsed(),
        growth >> 10
    );
    assert!(
        growth < PEAK_GROWTH_BYTES_MAX,
        "{name}: the peak virtual size grew by {growth} bytes"
    );
}

/// The byte order of the length and count fields of a format.
#[derive(Debug, Clone, Copy)]
pub enum Endian {
    /// Our own formats (frames, WAL, sealed files, journals).
    Little,
    /// Thrift.
    Big,
}

/// How a valid encoding is spoiled.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// XOR one byte (position taken modulo the length).
    Flip(usize, u8),
    /// Cut the encoding at this position (modulo the length + 1).
    Truncate(usize),
    /// Overwrite four bytes at this position with a u32: what a lying length or count
    /// field looks like.
    Length(usize, u32),
    /// Insert a byte.
    Insert(usize, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, mask)| Mutation::Flip(at, mask)),
        any::<usize>().prop_map(Mutation::Truncate),
        (
            any::<usize>(),
            prop_oneof![
                Just(u32::MAX),
                Just(0x8000_0000),
                Just(0x7FFF_FFFF),
                Just(0x00FF_FFFF),
                Just(65_536),
                any::<u32>()
            ]
        )
            .prop_map(|(at, value)| Mutation::Length(at, value)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
    ]
}

/// `valid` with `mutations` applied in order.
pub fn mutate(valid: &[u8], mutations: &[Mutation], endian: Endian) -> Vec<u8> {
    let mut bytes = valid.to_vec();
    for mutation in mutations {
        match *mutation {
            Mutation::Flip(at, mask) if !bytes.is_empty() => {
                let at = at % bytes.len();
                bytes[at] ^= mask;
            }
            Mutation::Truncate(at) => bytes.truncate(at % (bytes.len() + 1)),
            Mutation::Length(at, value) if bytes.len() >= 4 => {
                let at = at % (bytes.len() - 3);
                let value = match endian {
                    Endian::Little => value.to_le_bytes(),
                    Endian::Big => value.to_be_bytes(),
                };
                bytes[at..at + 4].copy_from_slice(&value);
            }
            Mutation::Insert(at, byte) => {
                let at = at % (bytes.len() + 1);
                bytes.insert(at, byte);
            }
            _ => {}
        }
    }
    bytes
}

/// A valid encoding from `samples`, spoiled by one to four mutations; lengths written
/// in `endian` order.
pub fn mutated_in(samples: Vec<Vec<u8>>, endian: Endian) -> impl Strategy<Value = Vec<u8>> {
    let count = samples.len();
    (0..count, prop::collection::vec(mutation(), 1..4))
        .prop_map(move |(index, mutations)| mutate(&samples[index], &mutations, endian))
}

/// [`mutated_in`] little-endian: our own formats.
pub fn mutated(samples: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    mutated_in(samples, Endian::Little)
}

/// Up to 1 KiB of arbitrary bytes.
pub fn arbitrary_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..1024)
}
