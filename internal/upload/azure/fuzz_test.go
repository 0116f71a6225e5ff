package azure

import (
	"encoding/json"
	"testing"
)

// FuzzParseOptions: any bytes give options or an error, never a panic, and
// accepted options have the required fields and a valid generation.
func FuzzParseOptions(f *testing.F) {
	f.Add([]byte(`{"tenant_id":"t","subscription_id":"s","resource_group":"g","hyper_v_generation":"V2"}`))
	f.Add([]byte(`{"tenant_id":"t"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := ParseOptions(json.RawMessage(b))
		if err != nil {
			return
		}
		if o.TenantID == "" || o.SubscriptionID == "" || o.ResourceGroup == "" {
			t.Fatalf("accepted %q without a required field: %+v", b, o)
		}
		if g := o.HyperVGeneration; g != "" && g != "V1" && g != "V2" {
			t.Fatalf("accepted generation %q", g)
		}
	})
}
