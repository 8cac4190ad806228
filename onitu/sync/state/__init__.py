"""What the referee keeps: agreed versions and who holds them, each replica's current entries, paths in order."""
