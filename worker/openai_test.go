package worker

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/lorafleet/lorafleet/pkg/api"
)

// The official OpenAI Go SDK is the client: what it sends and parses is what users' code does.
func newSDK(tw *testWorker) openai.Client {
	return openai.NewClient(option.WithBaseURL(tw.url+"/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
}

func TestSDKCompletionMatchesGolden(t *testing.T) {
	tw := startWorker(t, "tiny-llama", nil)
	client := newSDK(tw)
	ctx := context.Background()
	for _, c := range tw.golden.Cases {
		n := len(c.Greedy)
		want, finish := tw.expectedText(c, n)
		resp, err := client.Completions.New(ctx, openai.CompletionNewParams{
			Model:       openai.CompletionNewParamsModel(tw.modelName(c)),
			Prompt:      openai.CompletionNewParamsPromptUnion{OfString: openai.String(c.Prompt)},
			MaxTokens:   openai.Int(int64(n)),
			Temperature: openai.Float(0),
		})
		if err != nil {
			t.Fatalf("%q with %q: %v", c.Prompt, c.Adapter, err)
		}
		if len(resp.Choices) != 1 || resp.Choices[0].Text != want || string(resp.Choices[0].FinishReason) != finish {
			t.Errorf("%q with %q: got %+v, want text %q finish %s", c.Prompt, c.Adapter, resp.Choices, want, finish)
		}
		if resp.Object != "text_completion" || resp.Usage.PromptTokens != int64(len(c.PromptIDs)) ||
			resp.Usage.TotalTokens != resp.Usage.PromptTokens+resp.Usage.CompletionTokens {
			t.Errorf("%q: object %q usage %+v (prompt has %d tokens)", c.Prompt, resp.Object, resp.Usage, len(c.PromptIDs))
		}
	}
}

func TestSDKCompletionStream(t *testing.T) {
	tw := startWorker(t, "tiny-llama", nil)
	client := newSDK(tw)
	c := tw.golden.Cases[len(tw.golden.Cases)-1]
	want, finish := tw.expectedText(c, len(c.Greedy))
	stream := client.Completions.NewStreaming(context.Background(), openai.CompletionNewParams{
		Model:         openai.CompletionNewParamsModel(tw.modelName(c)),
		Prompt:        openai.CompletionNewParamsPromptUnion{OfString: openai.String(c.Prompt)},
		MaxTokens:     openai.Int(int64(len(c.Greedy))),
		Temperature:   openai.Float(0),
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	})
	var text, gotFinish string
	var usage openai.CompletionUsage
	for stream.Next() {
		ch := stream.Current()
		for _, choice := range ch.Choices {
			text += choice.Text
			if choice.FinishReason != "" {
				gotFinish = string(choice.FinishReason)
			}
		}
		if ch.Usage.TotalTokens > 0 {
			usage = ch.Usage
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if text != want || gotFinish != finish {
		t.Errorf("streamed %q (finish %q), want %q (%s)", text, gotFinish, want, finish)
	}
	if usage.PromptTokens != int64(len(c.PromptIDs)) || usage.CompletionTokens == 0 {
		t.Errorf("usage chunk %+v", usage)
	}
}

func TestSDKChat(t *testing.T) {
	tw := startWorker(t, "tiny-llama", nil)
	client := newSDK(tw)
	ctx := context.Background()
	params := openai.ChatCompletionNewParams{
		Model:       "chat",
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.UserMessage("What is LoRA?")},
		MaxTokens:   openai.Int(12),
		Temperature: openai.Float(0),
	}
	resp, err := client.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Choices) != 1 || resp.Object != "chat.completion" || resp.Choices[0].Message.Role != "assistant" {
		t.Fatalf("response %+v", resp)
	}
	// The same conversation through the template, as a plain completion of token ids, must
	// give the same text: chat is the template plus generation.
	ids, err := tw.chatPrompt([]api.ChatMessage{{Role: "user", Content: api.TextContent("What is LoRA?")}}, true)
	if err != nil {
		t.Fatal(err)
	}
	status, body, _ := tw.post(t, "/v1/completions", map[string]any{"model": "chat", "prompt": ids, "max_tokens": 12, "temperature": 0})
	if status != http.StatusOK {
		t.Fatalf("completion of the templated prompt: %d %s", status, body)
	}
	if want := completionText(t, body); resp.Choices[0].Message.Content != want {
		t.Errorf("chat content %q, completion of the rendered template %q", resp.Choices[0].Message.Content, want)
	}

	stream := client.Chat.Completions.NewStreaming(ctx, params)
	var acc openai.ChatCompletionAccumulator
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if len(acc.Choices) != 1 || acc.Choices[0].Message.Content != resp.Choices[0].Message.Content {
		t.Errorf("streamed chat %+v, want content %q", acc.Choices, resp.Choices[0].Message.Content)
	}
}

func TestSDKModels(t *testing.T) {
	tw := startWorker(t, "tiny-llama", nil)
	client := newSDK(tw)
	page, err := client.Models.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range page.Data {
		ids = append(ids, m.ID)
	}
	want := append([]string{"tiny-llama"}, tw.golden.Adapters()...)
	slices.Sort(ids)
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Errorf("models %v, want %v", ids, want)
	}
	_, body := tw.get(t, "/v1/models")
	for _, a := range tw.golden.Adapters() {
		if !containsJSON(t, body, map[string]any{"id": a, "parent": "tiny-llama", "object": "model"}) {
			t.Errorf("adapter %s not listed with parent tiny-llama: %s", a, body)
		}
	}
}

func TestSDKUnknownAdapterIs404(t *testing.T) {
	tw := startWorker(t, "tiny-llama", nil)
	client := newSDK(tw)
	_, err := client.Completions.New(context.Background(), openai.CompletionNewParams{
		Model:  "no-such-adapter",
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("hi")},
	})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("error %v is not an OpenAI API error", err)
	}
	if apiErr.StatusCode != http.StatusNotFound || apiErr.Message != "The model `no-such-adapter` does not exist." || apiErr.Type != "NotFoundError" {
		t.Errorf("got %d %q type %q", apiErr.StatusCode, apiErr.Message, apiErr.Type)
	}
}
