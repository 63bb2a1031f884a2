//! otter-agent (skeleton).
