# Durability and concurrency of the registry, with nginx run by this test
# (master and workers, as in production): kill -9 of every nginx process,
# reload, restart with another worker count, parallel writers.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use File::Path qw(make_path remove_tree);
use IO::Socket::INET;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);
use AcsTest::Reg;
use AcsTest::Server ();

my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
my @modules = split ' ', ($ENV{TEST_NGINX_LOAD_MODULES} || '');
my $root = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '/220-registry-durability';
$root = File::Spec->rel2abs($root);

remove_tree($root);
make_path("$root/conf", "$root/logs", "$root/tmp");

my $port = AcsTest::Server::free_port();

sub write_conf {
    my ($workers, $registry) = @_;
    $registry //= "$root/registry max_devices=1000";
    open my $fh, '>', "$root/conf/nginx.conf" or die $!;
    print $fh map { "load_module " . File::Spec->rel2abs($_) . ";\n" } @modules;
    print $fh <<"CONF";
worker_processes $workers;
user root;
error_log $root/logs/error.log info;
pid $root/logs/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $root/tmp;
    acs_notify_registry $registry;
    server {
        listen 127.0.0.1:$port;
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key $AcsTest::Reg::KEY;
        }
    }
}
CONF
    close $fh;
}

# alive and not a zombie (the daemonised master's parent may not reap it)
sub alive {
    my ($pid) = @_;
    return 0 unless kill 0, $pid;
    open my $fh, '<', "/proc/$pid/stat" or return 0;
    my $stat = <$fh> // '';
    return $stat !~ /^\d+ \(.*?\) Z/;
}

sub master_pid {
    open my $fh, '<', "$root/logs/nginx.pid" or return;
    my $pid = <$fh>;
    chomp $pid if defined $pid;
    return $pid;
}

sub workers_of {
    my ($master) = @_;
    my @pids = grep { /^\d+$/ } split ' ', `pgrep -P $master 2>/dev/null`;
    return @pids;
}

sub start {
    unlink "$root/logs/nginx.pid";
    system($nginx, '-p', "$root/", '-c', "$root/conf/nginx.conf") == 0
        or die "nginx did not start";
    for (1 .. 100) {
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port");
        return if $s && master_pid();
        sleep 0.05;
    }
    die "nginx did not listen";
}

sub stop {
    my $m = master_pid() or return;
    kill 'QUIT', $m;
    for (1 .. 100) { last unless alive($m); sleep 0.05 }
    kill 'KILL', $m if alive($m);
}

END { stop() }

# one request on a fresh connection: (status, body)
sub call {
    my ($method, $path, $body) = @_;
    $body //= '';
    my $h = signed_headers($method, $path, $body);
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 10)
        or return (0, "connect: $!");
    $h =~ s/\n/\r\n/g;
    print $s "$method $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        . "Content-Length: " . length($body) . "\r\n$h\r\n\r\n$body";
    local $/;
    my $resp = <$s> // '';
    my ($status) = $resp =~ m{^HTTP/1\.\d (\d+)};
    my (undef, $content) = split /\r\n\r\n/, $resp, 2;
    return ($status // 0, $content // '');
}

my $user = '/acs/users/8%3Aacs%3Adurable';

write_conf(2);
start();

my ($st, $b) = call(PUT => "$user/devices/d1", reg_body(ttlSeconds => 86400));
is($st, 201, 'registered');

# kill -9 every nginx process right after the answer: nothing was lost
my $m = master_pid();
my @w = workers_of($m);
ok(@w == 2, 'two workers running');
kill 'KILL', $m, @w;
sleep 0.2;
ok(!alive($m) && !grep({ alive($_) } @w), 'no nginx process left after kill -9');

start();
($st, $b) = call(GET => "$user/devices/d1");
is($st, 200, 'the registration survived kill -9 of every nginx process');
like($b, qr/"deviceId":"d1"/, '... and reads back whole');

# reload
($st) = call(PUT => "$user/devices/d2", reg_body());
is($st, 201, 'second device registered');
$m = master_pid();
kill 'HUP', $m;
sleep 0.5;
($st, $b) = call(GET => "$user/devices");
is($st, 200, 'listed after nginx -s reload');
like($b, qr/"d1".*"d2"/, '... both devices there');

# restart with another worker count
stop();
write_conf(1);
start();
($st, $b) = call(GET => "$user/devices");
like($b, qr/"d1".*"d2"/, 'both devices there after a restart with 1 worker');
stop();

# concurrency: 2 workers, 8 clients writing, reading and deleting the same
# user at once; afterwards every device a client left must be there whole
write_conf(2);
start();

my $clients = 8;
my $per = 25;
my @kids;
for my $c (1 .. $clients) {
    my $pid = fork // die;
    if ($pid == 0) {
        my $bad = 0;
        for my $i (1 .. $per) {
            my ($s1) = call(PUT => "/acs/users/shared/devices/c$c-$i",
                            reg_body(platform => 'fcmv1', handle => "tok-$c-$i"));
            $bad++ unless $s1 == 201;
            my ($s2, $list) = call(GET => "/acs/users/shared/devices");
            $bad++ unless $s2 == 200 && $list =~ /"deviceId":"c$c-$i"/;
            if ($i % 5 == 0) {
                my ($s3) = call(DELETE => "/acs/users/shared/devices/c$c-$i");
                $bad++ unless $s3 == 204;
            }
        }
        POSIX::_exit($bad > 255 ? 255 : $bad);
    }
    push @kids, $pid;
}

my $failed = 0;
for (@kids) { waitpid $_, 0; $failed += $? >> 8 }
is($failed, 0, "$clients parallel clients saw every write at once, no failure");

($st, $b) = call(GET => "/acs/users/shared/devices");
my @ids = $b =~ /"deviceId":"(c\d+-\d+)"/g;
is(scalar @ids, $clients * ($per - $per / 5), 'the registry holds exactly the devices not deleted');
my %seen = map { $_ => 1 } @ids;
my @missing = grep { !$seen{$_} }
              map { my $c = $_; map { "c$c-$_" } grep { $_ % 5 } 1 .. $per } 1 .. $clients;
is("@missing", '', 'none missing');
like($b, qr/"handle":"tok-3-7"/, 'records are whole');

stop();

open my $log, '<', "$root/logs/error.log" or die $!;
my @bad = grep { /\[(alert|crit|emerg)\]/ } <$log>;
is("@bad", '', 'no alert, crit or emerg in the error log');
close $log;

# a full database: 507, nothing corrupted, reads still work
write_conf(1, "$root/small max_size=1m max_devices=1000");
start();

my ($full, $n) = (0, 0);
for my $i (1 .. 3000) {
    ($st, $b) = call(PUT => "/acs/users/filler/devices/d$i",
                     reg_body(platform => 'fcmv1', handle => 'x' x 1500));
    if ($st == 507) { $full = $i; last }
    $n++ if $st == 201;
}
ok($full > 1, "the 1m registry filled up after $n registrations");
like($b, qr/^\{"error":\{"code":"InsufficientStorage",/, '507 InsufficientStorage');
($st, $b) = call(GET => "/acs/users/filler/devices/d1");
is($st, 200, 'reads still work when full');
($st, $b) = call(GET => "/acs/users/filler/devices");
my @stored = $b =~ /"deviceId":"d\d+"/g;
is(scalar @stored, $n, 'every acknowledged registration is there');
($st) = call(DELETE => "/acs/users/filler/devices/d1");
is($st, 204, 'deleting works when full');
stop();

open $log, '<', "$root/logs/error.log" or die $!;
my @full = grep { /\[crit\].*acs_notify_registry: database full/ } <$log>;
ok(@full >= 1, 'a full database is logged at crit');

done_testing();
