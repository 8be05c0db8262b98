package vmm

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/internal/pb"
	"github.com/soulpad/soulpad/sdk/internal/rpc"
)

func init() {
	rpc.RegisterKind(rpc.KindGlue[VMM]{Kind: sdk.KindVMM, APIVersion: APIVersion, Order: 30, Interface: "vmm.VMM",
		Serve: func(impl VMM, s *grpc.Server) { pb.RegisterVMMServer(s, &server{impl: impl}) },
		Client: func(base rpc.BaseClient, c *grpc.ClientConn) any {
			return &Client{BaseClient: base, c: pb.NewVMMClient(c)}
		},
	})
}

func specToPB(s Spec) *pb.MachineSpec {
	out := &pb.MachineSpec{Name: s.Name, MemoryMib: s.MemoryMiB, Vcpus: uint32(s.VCPUs), CpuModel: s.CPUModel,
		Accelerator: s.Accelerator, Network: s.Network, Display: s.Display, Kernel: s.Kernel, Initrd: s.Initrd,
		Cmdline: s.Cmdline, Extra: s.Extra, Firmware: s.Firmware, SecureBoot: s.SecureBoot, Devices: s.Devices, Media: s.Media}
	for _, d := range s.Disks {
		out.Disks = append(out.Disks, &pb.Disk{Name: d.Name, Path: d.Path, Format: d.Format, SizeMib: d.SizeMiB, ReadOnly: d.ReadOnly})
	}
	return out
}

func specFromPB(s *pb.MachineSpec) Spec {
	out := Spec{Name: s.GetName(), MemoryMiB: s.GetMemoryMib(), VCPUs: int(s.GetVcpus()), CPUModel: s.GetCpuModel(),
		Accelerator: s.GetAccelerator(), Network: s.GetNetwork(), Display: s.GetDisplay(), Kernel: s.GetKernel(),
		Initrd: s.GetInitrd(), Cmdline: s.GetCmdline(), Extra: s.GetExtra(), Firmware: s.GetFirmware(), SecureBoot: s.GetSecureBoot(),
		Devices: s.GetDevices(), Media: s.GetMedia()}
	for _, d := range s.GetDisks() {
		out.Disks = append(out.Disks, Disk{Name: d.Name, Path: d.Path, Format: d.Format, SizeMiB: d.SizeMib, ReadOnly: d.ReadOnly})
	}
	return out
}

func consoleToPB(c Console) *pb.Console {
	return &pb.Console{Socket: c.Socket, Log: c.Log, Screen: c.Screen}
}

func consoleFromPB(c *pb.Console) Console {
	return Console{Socket: c.GetSocket(), Log: c.GetLog(), Screen: c.GetScreen()}
}

type server struct {
	pb.UnimplementedVMMServer
	impl VMM
}

func (s *server) Start(ctx context.Context, r *pb.StartRequest) (*pb.StartResponse, error) {
	req := StartRequest{Spec: specFromPB(r.Spec), MachineDir: r.MachineDir}
	if r.FromStateDir != "" {
		req.From = &PointState{StateDir: r.FromStateDir, Description: r.FromDescription}
	}
	out, err := s.impl.Start(ctx, req)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	return &pb.StartResponse{Description: out.Description, Console: consoleToPB(out.Console), CpuFeatures: out.CPUFeatures, RunningFiles: out.RunningFiles}, nil
}

func (s *server) Suspend(ctx context.Context, r *pb.SuspendRequest) (*pb.SuspendResponse, error) {
	out, err := s.impl.Suspend(ctx, SuspendRequest{Name: r.Name, StateDir: r.StateDir, Checkpoint: r.Checkpoint})
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	resp := &pb.SuspendResponse{Files: out.Files, Description: out.Description, Machine: out.Machine}
	resp.Sums = sumsToPB(out.Sums)
	resp.Phases = phasesToPB(out.Phases)
	return resp, nil
}

func (s *server) Resume(ctx context.Context, r *pb.ResumeRequest) (*pb.ResumeResponse, error) {
	out, err := s.impl.Resume(ctx, ResumeRequest{Spec: specFromPB(r.Spec), MachineDir: r.MachineDir, StateDir: r.StateDir, Description: r.Description, Sums: sumsFromPB(r.Sums)})
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	return &pb.ResumeResponse{Console: consoleToPB(out.Console), CpuFeatures: out.CPUFeatures, Phases: phasesToPB(out.Phases), Notes: out.Notes, RunningCopies: out.RunningCopies}, nil
}

func (s *server) PowerOff(ctx context.Context, r *pb.PowerOffRequest) (*pb.PowerOffResponse, error) {
	_, err := s.impl.PowerOff(ctx, PowerOffRequest{Name: r.Name, Force: r.Force})
	return &pb.PowerOffResponse{}, rpc.ToStatus(err)
}

func (s *server) Status(ctx context.Context, r *pb.StatusRequest) (*pb.StatusResponse, error) {
	out, err := s.impl.Status(ctx, StatusRequest{Name: r.Name})
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	return &pb.StatusResponse{State: out.State, Detail: out.Detail, NoCheckpoint: out.NoCheckpoint}, nil
}

func (s *server) Events(r *pb.EventsRequest, stream pb.VMM_EventsServer) error {
	es, ok := s.impl.(EventStreamer)
	if !ok {
		return rpc.ToStatus(sdk.ErrUnsupported)
	}
	ch, err := es.Events(stream.Context(), EventsRequest{Name: r.Name})
	if err != nil {
		return rpc.ToStatus(err)
	}
	for ev := range ch {
		if err := stream.Send(&pb.Event{Type: ev.Type, Message: ev.Message, UnixNano: ev.Time.UnixNano()}); err != nil {
			return err
		}
	}
	return nil
}

func (s *server) KeepDisks(ctx context.Context, r *pb.KeepDisksRequest) (*pb.KeepDisksResponse, error) {
	dh, ok := s.impl.(DiskHistory)
	if !ok {
		return nil, rpc.ToStatus(sdk.ErrUnsupported)
	}
	out, err := dh.KeepDisks(ctx, KeepDisksRequest{Spec: specFromPB(r.Spec), MachineDir: r.MachineDir, StateDir: r.StateDir})
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	return &pb.KeepDisksResponse{Files: out.Files, Description: out.Description}, nil
}

func (s *server) CollectDisks(ctx context.Context, r *pb.CollectDisksRequest) (*pb.CollectDisksResponse, error) {
	dh, ok := s.impl.(DiskHistory)
	if !ok {
		return nil, rpc.ToStatus(sdk.ErrUnsupported)
	}
	req := CollectDisksRequest{Spec: specFromPB(r.Spec), MachineDir: r.MachineDir}
	for _, k := range r.Keep {
		req.Keep = append(req.Keep, PointState{StateDir: k.StateDir, Description: k.Description})
	}
	out, err := dh.CollectDisks(ctx, req)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	return &pb.CollectDisksResponse{Removed: out.Removed, BytesFreed: out.BytesFreed}, nil
}

func (s *server) Progress(ctx context.Context, r *pb.ProgressRequest) (*pb.ProgressResponse, error) {
	pr, ok := s.impl.(ProgressReporter)
	if !ok {
		return nil, rpc.ToStatus(sdk.ErrUnsupported)
	}
	out, err := pr.Progress(ctx, ProgressRequest{Name: r.Name})
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	return &pb.ProgressResponse{Step: out.Step, Done: out.Done, Total: out.Total}, nil
}

// Progress implements ProgressReporter.
func (c *Client) Progress(ctx context.Context, r ProgressRequest) (ProgressResponse, error) {
	out, err := c.c.Progress(ctx, &pb.ProgressRequest{Name: r.Name})
	if err != nil {
		return ProgressResponse{}, rpc.FromStatus(err)
	}
	return ProgressResponse{Step: out.Step, Done: out.Done, Total: out.Total}, nil
}

// Client is the host's view of a VMM plugin. It implements VMM,
// EventStreamer and DiskHistory (the optional ones fail with
// sdk.ErrUnsupported when the plugin lacks them).
type Client struct {
	rpc.BaseClient
	c pb.VMMClient
}

var (
	_ VMM              = (*Client)(nil)
	_ EventStreamer    = (*Client)(nil)
	_ DiskHistory      = (*Client)(nil)
	_ ProgressReporter = (*Client)(nil)
)

// KeepDisks implements DiskHistory.
func (c *Client) KeepDisks(ctx context.Context, r KeepDisksRequest) (KeepDisksResponse, error) {
	out, err := c.c.KeepDisks(ctx, &pb.KeepDisksRequest{Spec: specToPB(r.Spec), MachineDir: r.MachineDir, StateDir: r.StateDir})
	if err != nil {
		return KeepDisksResponse{}, rpc.FromStatus(err)
	}
	return KeepDisksResponse{Files: out.Files, Description: out.Description}, nil
}

// CollectDisks implements DiskHistory.
func (c *Client) CollectDisks(ctx context.Context, r CollectDisksRequest) (CollectDisksResponse, error) {
	req := &pb.CollectDisksRequest{Spec: specToPB(r.Spec), MachineDir: r.MachineDir}
	for _, k := range r.Keep {
		req.Keep = append(req.Keep, &pb.PointState{StateDir: k.StateDir, Description: k.Description})
	}
	out, err := c.c.CollectDisks(ctx, req)
	if err != nil {
		return CollectDisksResponse{}, rpc.FromStatus(err)
	}
	return CollectDisksResponse{Removed: out.Removed, BytesFreed: out.BytesFreed}, nil
}

// Start implements VMM.
func (c *Client) Start(ctx context.Context, r StartRequest) (StartResponse, error) {
	req := &pb.StartRequest{Spec: specToPB(r.Spec), MachineDir: r.MachineDir}
	if r.From != nil {
		req.FromStateDir, req.FromDescription = r.From.StateDir, r.From.Description
	}
	out, err := c.c.Start(ctx, req)
	if err != nil {
		return StartResponse{}, rpc.FromStatus(err)
	}
	return StartResponse{Description: out.Description, Console: consoleFromPB(out.Console), CPUFeatures: out.CpuFeatures, RunningFiles: out.RunningFiles}, nil
}

// Suspend implements VMM.
func (c *Client) Suspend(ctx context.Context, r SuspendRequest) (SuspendResponse, error) {
	out, err := c.c.Suspend(ctx, &pb.SuspendRequest{Name: r.Name, StateDir: r.StateDir, Checkpoint: r.Checkpoint})
	if err != nil {
		return SuspendResponse{}, rpc.FromStatus(err)
	}
	resp := SuspendResponse{Files: out.Files, Description: out.Description, Machine: out.GetMachine()}
	resp.Sums = sumsFromPB(out.Sums)
	resp.Phases = phasesFromPB(out.Phases)
	return resp, nil
}

// Resume implements VMM.
func (c *Client) Resume(ctx context.Context, r ResumeRequest) (ResumeResponse, error) {
	out, err := c.c.Resume(ctx, &pb.ResumeRequest{Spec: specToPB(r.Spec), MachineDir: r.MachineDir, StateDir: r.StateDir, Description: r.Description, Sums: sumsToPB(r.Sums)})
	if err != nil {
		return ResumeResponse{}, rpc.FromStatus(err)
	}
	return ResumeResponse{Console: consoleFromPB(out.Console), CPUFeatures: out.CpuFeatures, Phases: phasesFromPB(out.Phases), Notes: out.Notes, RunningCopies: out.RunningCopies}, nil
}

// PowerOff implements VMM.
func (c *Client) PowerOff(ctx context.Context, r PowerOffRequest) (PowerOffResponse, error) {
	_, err := c.c.PowerOff(ctx, &pb.PowerOffRequest{Name: r.Name, Force: r.Force})
	return PowerOffResponse{}, rpc.FromStatus(err)
}

// Status implements VMM.
func (c *Client) Status(ctx context.Context, r StatusRequest) (StatusResponse, error) {
	out, err := c.c.Status(ctx, &pb.StatusRequest{Name: r.Name})
	if err != nil {
		return StatusResponse{}, rpc.FromStatus(err)
	}
	return StatusResponse{State: out.State, Detail: out.Detail, NoCheckpoint: out.NoCheckpoint}, nil
}

// Events implements EventStreamer. The channel closes when ctx is done or
// the stream ends (plugin gone); a plugin that died sends a last
// EventCrashed.
func (c *Client) Events(ctx context.Context, r EventsRequest) (<-chan Event, error) {
	stream, err := c.c.Events(ctx, &pb.EventsRequest{Name: r.Name})
	if err != nil {
		return nil, rpc.FromStatus(err)
	}
	// Recv blocks until the plugin sends an event or the stream ends (an
	// unsupported plugin ends it at once), so it runs in the goroutine.
	ch := make(chan Event, 16)
	go func() {
		defer close(ch)
		for {
			ev, err := stream.Recv()
			if err != nil {
				err = rpc.FromStatus(err)
				if ctx.Err() == nil && errors.Is(err, sdk.ErrPluginExited) {
					select {
					case ch <- Event{Type: EventCrashed, Message: err.Error(), Time: time.Now()}:
					case <-ctx.Done():
					}
				}
				return
			}
			select {
			case ch <- Event{Type: ev.Type, Message: ev.Message, Time: time.Unix(0, ev.UnixNano)}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, nil
}

func phasesToPB(ps []Phase) []*pb.Phase {
	var out []*pb.Phase
	for _, p := range ps {
		out = append(out, &pb.Phase{Name: p.Name, Seconds: p.Seconds})
	}
	return out
}

func phasesFromPB(ps []*pb.Phase) []Phase {
	var out []Phase
	for _, p := range ps {
		out = append(out, Phase{Name: p.Name, Seconds: p.Seconds})
	}
	return out
}

func sumsToPB(fs []FileSum) []*pb.FileSum {
	var out []*pb.FileSum
	for _, f := range fs {
		out = append(out, &pb.FileSum{Name: f.Name, Size: f.Size, Sha256: f.SHA256, ChunkBytes: f.ChunkBytes, ChunkSha256: f.ChunkSHA256, Mapped: f.Mapped, SumOfChunks: f.SumOfChunks, OnLoad: f.OnLoad})
	}
	return out
}

func sumsFromPB(fs []*pb.FileSum) []FileSum {
	var out []FileSum
	for _, f := range fs {
		out = append(out, FileSum{Name: f.Name, Size: f.Size, SHA256: f.Sha256, ChunkBytes: f.ChunkBytes, ChunkSHA256: f.ChunkSha256, Mapped: f.Mapped, SumOfChunks: f.SumOfChunks, OnLoad: f.OnLoad})
	}
	return out
}
