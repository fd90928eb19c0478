//! Tree-model paths (`root.sg.d1.s1`) and path patterns with wildcards.
//!
//! A pattern node is a name, `*` (exactly one level) or `**` (one or more
//! levels), as in IoTDB. Names are case-sensitive and kept unquoted; a name
//! that is not a plain identifier (`a b`, `1`, `x.y`) is written back with
//! backquotes by `Display`, so displaying and re-parsing round-trips.

use std::fmt;

/// The first node of every full path.
pub const ROOT: &str = "root";

/// One node of a path pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum PathNode {
    /// A literal node name.
    Name(String),
    /// `*`: any single node.
    OneLevel,
    /// `**`: one or more nodes.
    MultiLevel,
}

impl PathNode {
    /// The literal name, or `None` for a wildcard.
    pub fn name(&self) -> Option<&str> {
        match self {
            PathNode::Name(name) => Some(name),
            PathNode::OneLevel | PathNode::MultiLevel => None,
        }
    }
}

/// Whether `name` can be written without backquotes.
fn is_plain_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && (bytes[0].is_ascii_alphabetic() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|byte| byte.is_ascii_alphanumeric() || *byte == b'_')
}

impl fmt::Display for PathNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathNode::Name(name) if is_plain_name(name) => f.write_str(name),
            PathNode::Name(name) => write!(f, "`{}`", name.replace('`', "``")),
            PathNode::OneLevel => f.write_str("*"),
            PathNode::MultiLevel => f.write_str("**"),
        }
    }
}

/// A path whose nodes may include `*` and `**`. A full pattern starts with
/// `root`; a suffix pattern (select-list items) does not.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct PathPattern {
    /// The nodes in order; never empty when built by the parser.
    pub nodes: Vec<PathNode>,
}

impl PathPattern {
    /// A pattern from its nodes.
    pub fn new(nodes: Vec<PathNode>) -> PathPattern {
        PathPattern { nodes }
    }

    /// Whether any node is a wildcard.
    pub fn has_wildcard(&self) -> bool {
        self.nodes.iter().any(|node| node.name().is_none())
    }

    /// Whether the pattern starts with `root`.
    pub fn is_full(&self) -> bool {
        self.nodes.first().and_then(PathNode::name) == Some(ROOT)
    }

    /// The concrete path, or `None` when the pattern has a wildcard.
    pub fn to_path(&self) -> Option<Path> {
        self.nodes
            .iter()
            .map(|node| node.name().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .map(|nodes| Path { nodes })
    }

    /// This pattern followed by `suffix` (a FROM prefix joined with a
    /// select-list item).
    pub fn join(&self, suffix: &PathPattern) -> PathPattern {
        let mut nodes = self.nodes.clone();
        nodes.extend(suffix.nodes.iter().cloned());
        PathPattern { nodes }
    }

    /// Whether the `.`-separated `path` matches this pattern. `path` is split
    /// on every `.`, so it must not contain names with dots (callers match
    /// node lists with [`PathPattern::matches_nodes`] in that case).
    pub fn matches(&self, path: &str) -> bool {
        let nodes: Vec<&str> = path.split('.').collect();
        self.matches_nodes(&nodes)
    }

    /// Whether the node names `path` match this pattern.
    pub fn matches_nodes<S: AsRef<str>>(&self, path: &[S]) -> bool {
        // Dynamic programming over (pattern index, path index): `reachable[j]`
        // says whether the pattern prefix consumed so far can match the first
        // `j` path nodes. Linear memory, O(pattern × path) time, no recursion,
        // so hostile patterns like `**.**.**.x` cannot blow the stack or time.
        let mut reachable = vec![false; path.len() + 1];
        reachable[0] = true;
        for node in &self.nodes {
            let mut next = vec![false; path.len() + 1];
            match node {
                PathNode::Name(name) => {
                    for index in 0..path.len() {
                        next[index + 1] = reachable[index] && path[index].as_ref() == name;
                    }
                }
                PathNode::OneLevel => {
                    next[1..].copy_from_slice(&reachable[..path.len()]);
                }
                PathNode::MultiLevel => {
                    // One or more levels: next[j] = any reachable[i] with i < j.
                    let mut any_before = false;
                    for index in 0..path.len() {
                        any_before |= reachable[index];
                        next[index + 1] = any_before;
                    }
                }
            }
            reachable = next;
        }
        reachable[path.len()]
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, node) in self.nodes.iter().enumerate() {
            if index > 0 {
                f.write_str(".")?;
            }
            write!(f, "{node}")?;
        }
        Ok(())
    }
}

/// A concrete path without wildcards, such as a database, device or
/// timeseries path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Path {
    /// The node names in order, starting with `root` for a full path.
    pub nodes: Vec<String>,
}

impl Path {
    /// The last node (a measurement name for a timeseries path).
    pub fn last(&self) -> Option<&str> {
        self.nodes.last().map(String::as_str)
    }

    /// The path without its last node (the device of a timeseries path).
    pub fn parent(&self) -> Option<Path> {
        let (_, parent) = self.nodes.split_last()?;
        Some(Path {
            nodes: parent.to_vec(),
        })
    }

    /// This path followed by one more node.
    pub fn child(&self, name: &str) -> Path {
        let mut nodes = self.nodes.clone();
        nodes.push(name.to_string());
        Path { nodes }
    }

    /// The same path as a pattern.
    pub fn to_pattern(&self) -> PathPattern {
        PathPattern {
            nodes: self.nodes.iter().cloned().map(PathNode::Name).collect(),
        }
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_pattern())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pattern(text: &str) -> PathPattern {
        PathPattern::new(
            text.split('.')
                .map(|node| match node {
                    "*" => PathNode::OneLevel,
                    "**" => PathNode::MultiLevel,
                    name => PathNode::Name(name.to_string()),
                })
                .collect(),
        )
    }

    #[test]
    fn literal_patterns_match_only_themselves() {
        assert!(pattern("root.sg.d1.s1").matches("root.sg.d1.s1"));
        assert!(!pattern("root.sg.d1.s1").matches("root.sg.d1.s2"));
        assert!(!pattern("root.sg.d1").matches("root.sg.d1.s1"));
    }

    #[test]
    fn one_level_wildcard_matches_exactly_one_node() {
        assert!(pattern("root.sg.*.s1").matches("root.sg.d1.s1"));
        assert!(!pattern("root.sg.*.s1").matches("root.sg.a.b.s1"));
        assert!(!pattern("root.sg.*").matches("root.sg"));
    }

    #[test]
    fn multi_level_wildcard_matches_one_or_more_nodes() {
        assert!(pattern("root.**").matches("root.sg.d1.s1"));
        assert!(pattern("root.sg.**").matches("root.sg.d1"));
        assert!(!pattern("root.sg.**").matches("root.sg"));
        assert!(pattern("root.**.s1").matches("root.a.b.c.s1"));
        assert!(!pattern("root.**.s1").matches("root.s1"));
        assert!(pattern("root.**.d1.**").matches("root.x.d1.y.z"));
        assert!(!pattern("root.**.d1.**").matches("root.x.d1"));
    }

    #[test]
    fn display_backquotes_unusual_names() {
        let path = Path {
            nodes: vec!["root".into(), "a b".into(), "1".into(), "x`y".into()],
        };
        assert_eq!(path.to_string(), "root.`a b`.`1`.`x``y`");
        assert_eq!(pattern("root.**.*").to_string(), "root.**.*");
    }

    #[test]
    fn path_helpers() {
        let path = pattern("root.sg.d1.s1").to_path().unwrap();
        assert_eq!(path.last(), Some("s1"));
        assert_eq!(path.parent().unwrap().to_string(), "root.sg.d1");
        assert_eq!(
            path.parent().unwrap().child("s2").to_string(),
            "root.sg.d1.s2"
        );
        assert!(pattern("root.*").to_path().is_none());
        assert!(pattern("root.sg").is_full() && !pattern("d1.s1").is_full());
        assert_eq!(
            pattern("root.sg").join(&pattern("*.s1")).to_string(),
            "root.sg.*.s1"
        );
    }

    /// A backtracking matcher that is obviously right, to check the DP one.
    fn reference_match(pattern: &[PathNode], path: &[&str]) -> bool {
        match pattern.split_first() {
            None => path.is_empty(),
            Some((PathNode::Name(name), rest)) => {
                path.first() == Some(&name.as_str()) && reference_match(rest, &path[1..])
            }
            Some((PathNode::OneLevel, rest)) => {
                !path.is_empty() && reference_match(rest, &path[1..])
            }
            Some((PathNode::MultiLevel, rest)) => {
                (1..=path.len()).any(|taken| reference_match(rest, &path[taken..]))
            }
        }
    }

    proptest! {
        #[test]
        fn matcher_agrees_with_backtracking(
            pattern_nodes in proptest::collection::vec(
                prop_oneof![Just("a"), Just("b"), Just("*"), Just("**")], 0..6),
            path in proptest::collection::vec(prop_oneof![Just("a"), Just("b")], 0..7),
        ) {
            let compiled = pattern(&pattern_nodes.join("."));
            let compiled = if pattern_nodes.is_empty() { PathPattern::new(vec![]) } else { compiled };
            prop_assert_eq!(
                compiled.matches_nodes(&path),
                reference_match(&compiled.nodes, &path)
            );
        }
    }
}
