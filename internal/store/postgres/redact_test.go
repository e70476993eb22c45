package postgres

import (
	"strings"
	"testing"
)

func TestRedactDSN(t *testing.T) {
	for _, dsn := range []string{
		"postgres://po:s3cret@db.example.com:5432/postoffice?sslmode=require",
		"postgres://po@db.example.com/postoffice?password=s3cret",
		"host=db.example.com user=po password=s3cret dbname=postoffice",
		"host=db.example.com password = 's3 cret' dbname=postoffice",
	} {
		got := RedactDSN(dsn)
		if strings.Contains(got, "s3") || !strings.Contains(got, "db.example.com") {
			t.Errorf("RedactDSN(%q) = %q", dsn, got)
		}
	}
}
