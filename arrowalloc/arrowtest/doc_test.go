// Package arrowtest holds arrowalloc's tests that need Apache Arrow: a
// module of its own, so that hardalloc's main module requires no arrow.
package arrowtest
