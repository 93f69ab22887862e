package pretrain

import (
	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/engine/train"
)

func newToyOptimizer(m *model.Model) (*train.Optimizer, error) {
	return train.NewOptimizer(m, train.AdamWConfig{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8})
}
