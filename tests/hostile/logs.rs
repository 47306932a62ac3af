//! Hostile logs through `outgate report`: placeholder, filled below.
