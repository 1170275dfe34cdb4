module github.com/persiv/codex/shared

go 1.26.0
