module github.com/persiv/codex/schemas

go 1.26.0
