//! The Events a pure decision asks the shell to publish: kind, PascalCase reason, action and
//! message, with no client attached. The controllers turn them into `events.k8s.io/v1` Events.

/// Whether an Event is informational or a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteKind {
    /// `Normal`.
    Normal,
    /// `Warning`.
    Warning,
}

/// An Event a pure decision asks the shell to emit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Normal or Warning.
    pub kind: NoteKind,
    /// PascalCase reason, for example `Refreshed` or `Stale`.
    pub reason: &'static str,
    /// What the controller did or noticed (the Event's `action`), for example `Refresh`.
    pub action: &'static str,
    /// Human-readable message; cut to `controller::MAX_NOTE_BYTES` when published.
    pub message: String,
}
