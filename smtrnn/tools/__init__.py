"""Tools around the method: `compare` (the resumable study), `demo` (the main job), `plots` and `png` (figures),
`gradients` (‖∂L/∂m_t‖ against t for SMT and BPTT)."""
