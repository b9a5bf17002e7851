//! Server-side apply, inventory, prune and health (the apply-engine issue fills this in).
