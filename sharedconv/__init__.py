"""sharedconv: compare ways of computing a channel-shared 2-D convolution.

Importing this package imports no deep-learning framework; each backend imports its
framework only when it is used.
"""

__version__ = "0.1.0"
