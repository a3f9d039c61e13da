//! OCI image layout directory store (being written).
