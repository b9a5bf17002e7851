//! Helpers shared by the integration tests (`tests/it/`), by topic.

pub mod admission;
pub mod cluster;
pub mod controller;
pub mod dir_tree;
pub mod git;
pub mod gitea;
pub mod objects;
pub mod real_node;
pub mod recorder;
pub mod replica;
pub mod waiting;
pub mod webhook;
