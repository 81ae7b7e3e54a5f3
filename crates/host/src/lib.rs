//! Scratch.
mod bindings;
