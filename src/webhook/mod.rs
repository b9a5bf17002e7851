//! Push webhook receivers (the webhook issue fills this in).
