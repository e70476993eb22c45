package main

import (
	"postoffice/internal/config"
	"postoffice/internal/store"
	"postoffice/internal/store/sqlite"
)

// openStore opens the configured backend. A failure is temporary for a
// delivery agent's caller (exit 75): the data directory may come back.
func openStore(cfg config.Config) (store.Store, error) {
	st, err := sqlite.Open(cfg.DataDir)
	if err != nil {
		return nil, fail(exitTempFail, "opening the store in %s: %v", cfg.DataDir, err)
	}
	return st, nil
}
