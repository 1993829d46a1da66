"""The engine's error base, free of torch so the faces can catch it without loading torch.

Every error the engine raises on purpose (bad config, missing data, unusable database or
checkpoint, training that cannot go on) derives from :class:`DDPMError`, and its message is
written for the user: what is wrong and what to do. The CLI prints it as one line and exits 1;
anything else is a bug and says so.
"""


class DDPMError(Exception):
    """A problem the user can fix; ``str()`` says what and how."""
