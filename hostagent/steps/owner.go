package steps

import (
	"crypto"

	"github.com/agentkeys/agentkeys-infra/hostagent/fsx"
)

type ownerT = fsx.Owner

var noOwner = fsx.NoOwner

const cryptoSHA256 = crypto.SHA256
