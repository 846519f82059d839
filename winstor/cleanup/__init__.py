"""Finding and removing what runs left behind, by run label and tag (behind `winstor janitor`)."""
