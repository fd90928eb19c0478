//! Which seeds a simulated test runs, and how a failing seed is reported.
//!
//! - `SIM_SEED=<n>`: run exactly seed `n` (replay a failure).
//! - `SIM_SEEDS=<count>`: run `count` seeds (default `limits::SIM_SEEDS_DEFAULT`).
//! - `SIM_SEED_BASE=<n>`: start the seeds at `n` instead of 0, to explore new ones in a
//!   soak run without changing what CI runs.
//!
//! A failure — an `Err` from the run or a panic inside it (a broken assert in a node or a
//! checker) — stops at the first failing seed and panics with the command that replays it.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::trace::TRACE_ENV;
use crate::limits::{SIM_SEEDS_DEFAULT, SIM_SEEDS_MAX};

/// Replays one seed.
pub const SEED_ENV: &str = "SIM_SEED";
/// How many seeds a test runs.
pub const SEEDS_ENV: &str = "SIM_SEEDS";
/// The first seed of a multi-seed run.
pub const SEED_BASE_ENV: &str = "SIM_SEED_BASE";

/// The seeds to run, from the environment.
pub fn seeds_from_env() -> Result<Vec<u64>, String> {
    let read = |name: &str| -> Result<Option<u64>, String> {
        match std::env::var(name) {
            Ok(text) => text
                .trim()
                .parse::<u64>()
                .map(Some)
                .map_err(|error| format!("{name}={text:?} is not a number: {error}")),
            Err(_) => Ok(None),
        }
    };
    if let Some(seed) = read(SEED_ENV)? {
        return Ok(vec![seed]);
    }
    let count = read(SEEDS_ENV)?.unwrap_or(SIM_SEEDS_DEFAULT);
    if count == 0 || count > SIM_SEEDS_MAX {
        return Err(format!(
            "{SEEDS_ENV}={count} is outside 1..={SIM_SEEDS_MAX}"
        ));
    }
    let base = read(SEED_BASE_ENV)?.unwrap_or(0);
    let end = base
        .checked_add(count)
        .ok_or_else(|| format!("{SEED_BASE_ENV}={base} + {SEEDS_ENV}={count} overflows"))?;
    Ok((base..end).collect())
}

/// The command that replays `seed` of the test `name` in `module` (`module_path!()`).
///
/// The package is the one `cargo test` is running (`CARGO_PKG_NAME` at run time), else
/// the crate name of `module` with `_` read as `-`; so a simulated test in another crate
/// (the ConfigNode's, in `node`) prints its own replay command. No `--lib`: the command
/// finds the test in unit and integration test targets alike.
pub fn replay_command(module: &str, name: &str, seed: u64) -> String {
    let (krate, path) = module.split_once("::").unwrap_or((module, ""));
    let test = if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}::{name}")
    };
    let package = std::env::var("CARGO_PKG_NAME").unwrap_or_else(|_| krate.replace('_', "-"));
    format!("{SEED_ENV}={seed} cargo test --release -p {package} -- --exact {test}")
}

/// Runs `run` for every seed of the environment; on the first failure, panics with the
/// seed, the reason and the replay command. Pass `module_path!()` and the test's name.
pub fn check_seeds(module: &str, name: &str, mut run: impl FnMut(u64) -> Result<(), String>) {
    let seeds = seeds_from_env().unwrap_or_else(|error| panic!("{error}"));
    for seed in seeds {
        let outcome = catch_unwind(AssertUnwindSafe(|| run(seed)));
        let reason = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(reason)) => reason,
            Err(panic) => panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
                .unwrap_or_else(|| "panic with a non-text payload".to_string()),
        };
        let command = replay_command(module, name, seed);
        panic!(
            "simulation failed at seed {seed}: {reason}\nreplay with:\n  {command}\n\
             (prefix {TRACE_ENV}=1 and add --nocapture to print every event)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_command_names_the_test_and_seed() {
        assert_eq!(
            replay_command("iotdb_consensus::sim::tests", "determinism", 7),
            "SIM_SEED=7 cargo test --release -p iotdb-consensus -- --exact sim::tests::determinism"
        );
    }

    #[test]
    fn a_failing_seed_panics_with_its_replay_command() {
        if std::env::var_os(SEED_ENV).is_some() {
            return; // The seeds come from the environment; this test needs the default.
        }
        let outcome = catch_unwind(|| {
            check_seeds("iotdb_consensus::x", "t", |seed| {
                if seed == 3 {
                    Err("boom".into())
                } else {
                    Ok(())
                }
            })
        });
        let panic = outcome.expect_err("seed 3 fails");
        let message = panic.downcast_ref::<String>().expect("formatted panic");
        assert!(message.contains("seed 3: boom"), "{message}");
        assert!(message.contains("SIM_SEED=3 cargo test"), "{message}");
    }
}
