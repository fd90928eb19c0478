//! The last commands applied to a ConfigNode state: what a DataNode mirror lacks (the
//! deltas of heartbeats), and what changed since a route view was built (a view that only
//! gained partitions is derived from the one before instead of rebuilt).

use std::collections::VecDeque;

use super::node::HISTORY_COMMANDS_MAX;
use super::state::ConfigCommand;

/// At most [`HISTORY_COMMANDS_MAX`] commands, the oldest first: the command at position
/// `i` moved the state from version `base + i` to the next.
#[derive(Debug, Default)]
pub struct CommandHistory {
    commands: VecDeque<ConfigCommand>,
    base: u64,
}

impl CommandHistory {
    /// An empty history of a state at `version`.
    pub fn at(version: u64) -> CommandHistory {
        CommandHistory {
            commands: VecDeque::new(),
            base: version,
        }
    }

    /// Keeps `command`, which moved the state to the version after the last kept one.
    pub fn push(&mut self, command: ConfigCommand) {
        if self.commands.len() == HISTORY_COMMANDS_MAX {
            self.commands.pop_front();
            self.base += 1;
        }
        self.commands.push_back(command);
    }

    /// Forgets every command: the state was replaced whole and is now at `version`.
    pub fn reset(&mut self, version: u64) {
        self.commands.clear();
        self.base = version;
    }

    /// The commands that bring a state at `version` to the latest one, oldest first;
    /// `None` when they are no longer kept or `version` is ahead of the latest.
    pub fn since(&self, version: u64) -> Option<Vec<ConfigCommand>> {
        let latest = self.base + self.commands.len() as u64;
        if version < self.base || version > latest {
            return None;
        }
        let skip = (version - self.base) as usize;
        Some(self.commands.iter().skip(skip).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(i: u64) -> ConfigCommand {
        ConfigCommand::AssignSchemaPartitions {
            database: format!("root.db{i}"),
            assignments: Vec::new(),
        }
    }

    #[test]
    fn a_history_answers_from_any_kept_version_and_forgets_the_oldest() {
        let mut history = CommandHistory::at(10);
        assert_eq!(history.since(10).unwrap().len(), 0);
        assert!(history.since(9).is_none(), "before the first kept");
        assert!(history.since(11).is_none(), "ahead of the latest");
        for i in 0..HISTORY_COMMANDS_MAX as u64 + 3 {
            history.push(command(i));
        }
        let latest = 10 + HISTORY_COMMANDS_MAX as u64 + 3;
        assert!(history.since(12).is_none(), "three were forgotten");
        let all = history.since(13).unwrap();
        assert_eq!(all.len(), HISTORY_COMMANDS_MAX);
        assert_eq!(all[0], command(3));
        assert_eq!(
            history.since(latest - 1).unwrap(),
            vec![command(latest - 11)]
        );
        history.reset(100);
        assert!(history.since(latest).is_none());
        assert_eq!(history.since(100).unwrap().len(), 0);
    }
}
