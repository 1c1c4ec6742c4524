"""Services: the one place each piece of visrec's behaviour lives; entry points call these."""
