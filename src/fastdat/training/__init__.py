"""Training networks on a dataset's crops: the config (:mod:`.config`) and the loop (:mod:`.loop`)."""
