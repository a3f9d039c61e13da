//! Registry repository store (being written).
