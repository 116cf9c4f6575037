//! What an operator may tell a rollout (promote, roll back, pause, resume), and the lock its
//! controller and the admin API share its state under.

use std::sync::Mutex;

/// An operator command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// Promote now.
    Promote,
    /// Roll back now.
    Rollback,
    /// Stop taking steps.
    Pause,
    /// Take steps again.
    Resume,
}

impl Command {
    /// The command's name, as in an admin path.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Command::Promote => "promote",
            Command::Rollback => "rollback",
            Command::Pause => "pause",
            Command::Resume => "resume",
        }
    }

    /// The command named in an admin path.
    pub(crate) fn parse(name: &str) -> Option<Command> {
        Some(match name {
            "promote" => Command::Promote,
            "rollback" => Command::Rollback,
            "pause" => Command::Pause,
            "resume" => Command::Resume,
            _ => return None,
        })
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
