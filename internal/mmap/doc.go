// Package mmap maps files read-only into memory (the pages stay in the page
// cache, off the Go heap), for the token files of shard and the teacher
// stores of teacherstore. Where the platform has no mmap it reads the file.
// It knows nothing of what the bytes mean.
package mmap
