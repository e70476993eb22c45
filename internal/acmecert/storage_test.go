package acmecert_test

import (
	"testing"

	"github.com/postoffice-mail/postoffice/internal/acmecert"
	"github.com/postoffice-mail/postoffice/internal/acmecert/storagetest"
)

func TestMemStorage(t *testing.T) {
	storagetest.Run(t, func(*testing.T) acmecert.Storage { return acmecert.NewMemStorage() })
}
