//! [`ServerMode`] names, for command lines and reports: `thread-pool` and
//! `poll-group`.

use super::ServerMode;
use std::fmt;
use std::str::FromStr;

impl ServerMode {
    /// The mode's name: `thread-pool` or `poll-group` (what
    /// [`FromStr`] accepts).
    pub fn name(self) -> &'static str {
        match self {
            ServerMode::ThreadPool => "thread-pool",
            ServerMode::PollGroup => "poll-group",
        }
    }
}

impl fmt::Display for ServerMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A mode name [`ServerMode::from_str`] did not recognise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown server mode {0:?} (expected thread-pool or poll-group)")]
pub struct UnknownMode(pub String);

impl FromStr for ServerMode {
    type Err = UnknownMode;

    /// `thread-pool` or `poll-group` (what `Display` prints).
    fn from_str(s: &str) -> Result<Self, UnknownMode> {
        match s {
            "thread-pool" => Ok(ServerMode::ThreadPool),
            "poll-group" => Ok(ServerMode::PollGroup),
            _ => Err(UnknownMode(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for m in [ServerMode::ThreadPool, ServerMode::PollGroup] {
            assert_eq!(m.to_string().parse::<ServerMode>(), Ok(m));
        }
        assert_eq!("poll-group".parse(), Ok(ServerMode::PollGroup));
        let e = "pollgroup".parse::<ServerMode>().unwrap_err();
        assert_eq!(e, UnknownMode("pollgroup".into()));
        assert!(e.to_string().contains("thread-pool or poll-group"), "{e}");
    }
}
