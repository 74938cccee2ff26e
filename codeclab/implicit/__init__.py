"""Neural implicit video (NIRVANA): a video coded as the weights of networks fitted to it.

:mod:`.nirvana` the method (networks, quantised weights, fitting), :mod:`.weights` a group's
streams, :mod:`.container` the file (with :mod:`.architecture`, torch-free, for ``codeclab info``),
:mod:`.video_file` encoding and decoding whole clips (``codeclab encode/decode``).
"""
