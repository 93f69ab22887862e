package reward_test

import (
	"fmt"

	"github.com/serl-go/serl/engine/mathans"
	"github.com/serl-go/serl/engine/reward"
)

// Grading: the answer is extracted from each response, parsed once, and compared by value; the
// majority-vote reward of SeRL rewards the responses that agree with the most common answer.
func Example() {
	responses := []string{
		"Step 1: 12 + 8 = 20. The answer is \\boxed{20}.",
		"So the total is $\\frac{40}{2}$.",
		"The final answer is 19.",
		"\\boxed{20.0}",
	}
	rewards, rep := reward.MajorityResponses(responses)
	fmt.Println("rewards:", rewards, "representative:", rep)
	fmt.Println("share:", reward.Share(rewards), "kept:", reward.KeepDifficulty(reward.Share(rewards), 0.2, 0.8))
	fmt.Println("graded against 20:", mathans.Equivalent("20", responses[1]))
	// Output:
	// rewards: [1 1 0 1] representative: 0
	// share: 0.75 kept: true
	// graded against 20: true
}
