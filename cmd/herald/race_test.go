//go:build race

package main

// raceBuild says that the tests run with the race detector; the herald binary they run
// as a process is then built with it too.
const raceBuild = true
