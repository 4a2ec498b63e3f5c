package AcsTest::Server;

# nginx run by a plain Test::More script, as in production (a master and
# workers), for tests that need more than one request per block allows:
# kill -9, reload, parallel clients, the Notification Hubs journal.
#
#   my $s = AcsTest::Server->new('300-dispatch');
#   $s->write_conf(workers => 2, http => '...', server => '...');
#   $s->start;
#   my ($status, $headers, $body) = $s->request(POST => '/eg', $body, \%headers);
#   $s->stop;

use strict;
use AcsTest::Defaults;
use warnings;

use File::Path qw(make_path remove_tree);
use File::Spec;
use IO::Socket::INET;
use JSON::PP ();
use Time::HiRes qw(sleep);
use AcsTest::Reg ();

sub new {
    my ($class, $name) = @_;
    my $root = File::Spec->rel2abs(
        ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . "/$name");
    remove_tree($root);
    make_path("$root/conf", "$root/logs", "$root/tmp");
    my $self = bless {
        root    => $root,
        nginx   => $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx',
        modules => [ map { File::Spec->rel2abs($_) }
                     split ' ', ($ENV{TEST_NGINX_LOAD_MODULES} || '') ],
        port    => free_port(),
        log_pos => 0,
    }, $class;
    return $self;
}

sub root { $_[0]{root} }
sub port { $_[0]{port} }

sub free_port {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => 0, ReuseAddr => 1) or die $!;
    my $p = $s->sockport;
    close $s;
    return $p;
}

# %o: workers (1), http (inside http{}), server (inside server{}), main
sub write_conf {
    my ($self, %o) = @_;
    my $root = $self->{root};
    my $workers = $o{workers} // 1;
    open my $fh, '>', "$root/conf/nginx.conf" or die $!;
    print $fh map { "load_module $_;\n" } @{ $self->{modules} };
    print $fh <<"CONF";
worker_processes $workers;
user root;
error_log $root/logs/error.log ${\ ($o{log_level} // 'info')};
pid $root/logs/nginx.pid;
worker_rlimit_core 512m;
working_directory $root;
${\ ($o{main} // '')}
events { worker_connections 1024; }
http {
    access_log $root/logs/access.log;
    client_body_temp_path $root/tmp;
    proxy_temp_path $root/tmp;
    fastcgi_temp_path $root/tmp;
    uwsgi_temp_path $root/tmp;
    scgi_temp_path $root/tmp;
${\ ($o{http} // '')}
    server {
        listen 127.0.0.1:$self->{port}${\ ($o{listen} ? " $o{listen}" : "")};
${\ ($o{server} // '')}
    }
}
CONF
    close $fh;
}

sub alive {
    my ($pid) = @_;
    return 0 unless $pid && kill 0, $pid;
    open my $fh, '<', "/proc/$pid/stat" or return 0;
    my $stat = <$fh> // '';
    return $stat !~ /^\d+ \(.*?\) Z/;
}

sub master_pid {
    my ($self) = @_;
    open my $fh, '<', "$self->{root}/logs/nginx.pid" or return;
    my $pid = <$fh>;
    chomp $pid if defined $pid;
    return $pid;
}

sub workers {
    my ($self) = @_;
    my $m = $self->master_pid or return;
    return grep { /^\d+$/ && alive($_) } split ' ', `pgrep -P $m 2>/dev/null`;
}

# nginx's arguments: its prefix and configuration, and "-e stderr" so that
# what it logs before the configuration's error_log is open goes to the
# caller, wherever the binary's --error-log-path points (Debian's is
# stderr, a default build's logs/error.log, which is this server's log)
sub args {
    my ($self) = @_;
    return "-p $self->{root}/ -c $self->{root}/conf/nginx.conf -e stderr";
}

sub test_conf {
    my ($self) = @_;
    my $out = `$self->{nginx} ${\ $self->args} -t 2>&1`;
    return ($? == 0, $out);
}

sub start {
    my ($self) = @_;
    unlink "$self->{root}/logs/nginx.pid";
    my $out = `$self->{nginx} ${\ $self->args} 2>&1`;
    die "nginx did not start: $out" if $?;
    for (1 .. 200) {
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$self->{port}");
        return 1 if $s && $self->master_pid;
        sleep 0.025;
    }
    die "nginx did not listen";
}

sub reload {
    my ($self) = @_;
    kill 'HUP', $self->master_pid;
}

sub stop {
    my ($self) = @_;
    my $m = $self->master_pid or return;
    my @w = $self->workers;
    kill 'QUIT', $m;
    for (1 .. 400) { last unless alive($m) || grep { alive($_) } @w; sleep 0.025 }
    kill 'KILL', $m, @w if alive($m);
    unlink "$self->{root}/logs/nginx.pid";
}

sub DESTROY { $_[0]->stop if $_[0]{root} }

# (status, {lower-cased header => value}, body) on a fresh connection
sub request {
    my ($self, $method, $path, $body, $headers, $timeout) = @_;
    $body //= '';
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$self->{port}",
                                  Timeout => $timeout // 30)
        or return (0, {}, "connect: $!");
    my $h = "$method $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n";
    $h .= "Content-Length: " . length($body) . "\r\n" if length $body || $method eq 'POST';
    for my $k (sort keys %{ $headers // {} }) {
        $h .= "$k: $headers->{$k}\r\n";
    }
    print $s "$h\r\n$body";
    local $/;
    my $resp;
    eval {
        local $SIG{ALRM} = sub { die "timeout\n" };
        alarm($timeout // 30);
        $resp = <$s>;
        alarm 0;
    };
    return (0, {}, "timeout") unless defined $resp;
    return (0, {}, "closed") unless length $resp;
    my ($head, $content) = split /\r\n\r\n/, $resp, 2;
    my ($status) = $head =~ m{^HTTP/1\.\d (\d+)};
    my %hdr;
    for (split /\r\n/, $head) {
        $hdr{lc $1} = $2 if /^([^:]+):\s*(.*)$/;
    }
    return ($status // 0, \%hdr, $content // '');
}

# a registration through the signed API
sub register {
    my ($self, $raw_id, $device, %body) = @_;
    my $path = "/acs/users/" . uri_escape($raw_id) . "/devices/$device";
    my $b = AcsTest::Reg::reg_body(%body);
    my %h = map { /^([^:]+): (.*)$/ ? ($1 => $2) : () }
            split /\n/, AcsTest::Reg::signed_headers('PUT', $path, $b);
    my ($st, undef, $resp) = $self->request(PUT => $path, $b, \%h);
    return wantarray ? ($st, $resp) : $st;
}

sub uri_escape {
    my ($s) = @_;
    $s =~ s/([^A-Za-z0-9._~-])/sprintf('%%%02X', ord $1)/ge;
    return $s;
}

# error log lines written since the previous call
sub new_log {
    my ($self) = @_;
    open my $fh, '<', "$self->{root}/logs/error.log" or return '';
    seek $fh, $self->{log_pos}, 0;
    local $/;
    my $text = <$fh> // '';
    $self->{log_pos} = tell $fh;
    return $text;
}

sub whole_log {
    my ($self) = @_;
    open my $fh, '<', "$self->{root}/logs/error.log" or return '';
    local $/;
    return scalar <$fh>;
}

# the status page (acs_notify_status at PATH, /status unless told),
# decoded; undef unless it answered 200
sub status {
    my ($self, $path) = @_;
    my ($st, undef, $body) = $self->request(GET => $path // '/status');
    return $st == 200 ? JSON::PP::decode_json($body) : undef;
}

# the entry of a status page's hub_hosts that serves HUBS; none is a
# failed test (and {}, so that the caller's checks fail too)
sub hub_host {
    my ($status, $hubs) = @_;
    my ($h) = grep { $_->{hubs} eq $hubs } @{ $status->{hub_hosts} // [] };
    return $h if $h;
    require Test::More;
    Test::More::fail("the status page lists the host of hubs \"$hubs\"");
    return {};
}

# the error log's lines at these levels (alert, crit and emerg unless told)
sub bad_lines {
    my ($self, @levels) = @_;
    my $re = join '|', @levels ? @levels : qw(alert crit emerg);
    return grep { /\[(?:$re)\]/ } split /\n/, $self->whole_log;
}

1;
