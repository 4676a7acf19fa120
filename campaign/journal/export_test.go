package journal

// The statements of a PostgreSQL group commit, for the plan test.
var (
	PGHandoffSQL = pgHandoffSQL
	PGSentSQL    = pgOutcomeSQL(tSent)
)
