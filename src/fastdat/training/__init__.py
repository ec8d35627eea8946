"""Training networks on a dataset's crops: the config (:mod:`.config`), the loop (:mod:`.loop`)."""
