package fuzz

//go:generate go run gencorpus.go
