"""The Onitu sync hub: drivers, file metadata, routing rules and the pure reconcile step the referee runs."""
