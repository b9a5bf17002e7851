//! Reading and validating the YAML manifests of a revision (the apply-engine issue fills this in).
