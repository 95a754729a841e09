package scorer

import "fmt"

// NewClassifier returns the classifier named in filter.classifier.
func NewClassifier(name string) (Classifier, error) {
	switch name {
	case "", "none":
		return None{}, nil
	}
	return nil, fmt.Errorf("unknown classifier %q (known: none)", name)
}
