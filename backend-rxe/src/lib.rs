//! rdmaxprt-rxe (work in progress).
