//! Finding the primary.
