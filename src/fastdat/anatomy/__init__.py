"""Anatomy every stage shares (a leaf: it imports no stage).

- :mod:`.labels`: the label lookup table, regions, sides and the one true-SBR definition;
- :mod:`.phantom`: the parametric brain phantom (subjects, activity and label maps) the simulator
  draws its patients from;
- :mod:`.template`: the mean anatomy the striata are located and VOIs placed with.
"""
